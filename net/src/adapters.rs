//! Which of a peer's announced addresses to use, and which of our network
//! adapters discovery runs on.
//!
//! A party PC often has more adapters than its LAN card: Hyper-V and WSL
//! switches, VirtualBox and VMware host-only networks, Docker bridges, VPNs
//! (Tailscale, ZeroTier, WireGuard). Announcing and following all of them
//! lets the first handshake that succeeds win, so a transfer could run over
//! a VPN. By default discovery skips virtual and VPN adapters (a setting
//! includes them), and a peer's addresses are tried best first: on the
//! subnet of one of our LAN adapters, then other private IPv4, then IPv6;
//! an address only reachable through a virtual adapter (or in Tailscale's
//! 100.64.0.0/10) is not followed unless virtual adapters are included.

use std::net::{IpAddr, Ipv4Addr};

/// One address of one of our adapters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNet {
    pub name: String,
    pub ip: IpAddr,
    pub prefix_len: u8,
    /// A virtual or VPN adapter, by its name.
    pub is_virtual: bool,
}

/// Our adapters' addresses (loopback left out).
pub fn local_nets() -> Vec<LocalNet> {
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    interfaces
        .into_iter()
        .filter(|i| !i.is_loopback())
        .map(|i| {
            let prefix_len = match &i.addr {
                if_addrs::IfAddr::V4(v4) => v4.prefixlen,
                if_addrs::IfAddr::V6(v6) => v6.prefixlen,
            };
            LocalNet {
                is_virtual: is_virtual_adapter(&i.name),
                ip: i.ip(),
                prefix_len,
                name: i.name,
            }
        })
        .collect()
}

/// Whether an adapter's name (Linux's `tailscale0`, Windows' friendly
/// names such as "vEthernet (WSL)") is a virtual or VPN adapter.
pub fn is_virtual_adapter(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    const CONTAINS: [&str; 12] = [
        "tailscale",
        "zerotier",
        "wireguard",
        "vethernet",
        "virtualbox",
        "vmware",
        "hyper-v",
        "wsl",
        "docker",
        "vpn",
        "openvpn",
        "hamachi",
    ];
    const PREFIXES: [&str; 10] = [
        "zt", "wg", "tun", "tap", "utun", "virbr", "vboxnet", "vmnet", "br-", "ts",
    ];
    CONTAINS.iter().any(|word| lower.contains(word))
        || PREFIXES.iter().any(|prefix| {
            lower.starts_with(prefix)
                && lower[prefix.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_ascii_digit() || c == '-' || *prefix == "br-")
        })
}

fn same_subnet(a: IpAddr, b: IpAddr, prefix_len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let bits = u32::from(prefix_len.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let bits = u32::from(prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn in_cgnat(ip: Ipv4Addr) -> bool {
    // 100.64.0.0/10: Tailscale hands these out.
    let [a, b, ..] = ip.octets();
    a == 100 && (64..128).contains(&b)
}

/// How good `addr` is to reach a peer at, lower first; `None`: not followed.
pub fn rank(addr: IpAddr, ours: &[LocalNet], include_virtual: bool) -> Option<u8> {
    let on = |virtual_ok: bool| {
        ours.iter()
            .any(|n| n.is_virtual == virtual_ok && same_subnet(addr, n.ip, n.prefix_len))
    };
    if on(false) {
        return Some(0);
    }
    let virtual_only = on(true) || matches!(addr, IpAddr::V4(v4) if in_cgnat(v4));
    match (virtual_only, include_virtual, addr) {
        (true, false, _) => None,
        (true, true, _) => Some(3),
        (false, _, IpAddr::V4(_)) => Some(1),
        (false, _, IpAddr::V6(_)) => Some(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, ip: &str, prefix_len: u8) -> LocalNet {
        LocalNet {
            name: name.to_owned(),
            ip: ip.parse().unwrap(),
            prefix_len,
            is_virtual: is_virtual_adapter(name),
        }
    }

    #[test]
    fn virtual_and_vpn_adapters_are_told_by_name() {
        for name in [
            "tailscale0",
            "Tailscale",
            "zt3jnkd2b1",
            "ZeroTier One [8056c2e21c000001]",
            "wg0",
            "vEthernet (WSL)",
            "vEthernet (Default Switch)",
            "VirtualBox Host-Only Network",
            "VMware Network Adapter VMnet8",
            "docker0",
            "br-4f2a9c",
            "virbr0",
            "tun0",
            "utun3",
        ] {
            assert!(is_virtual_adapter(name), "{name}");
        }
        for name in [
            "eth0",
            "enp3s0",
            "wlan0",
            "Ethernet",
            "Wi-Fi",
            "en0",
            "Ethernet 2",
        ] {
            assert!(!is_virtual_adapter(name), "{name}");
        }
    }

    #[test]
    fn the_lan_address_comes_first_and_vpn_only_ones_are_left_out() {
        let ours = [
            net("eth0", "192.168.1.20", 24),
            net("tailscale0", "100.101.2.3", 32),
            net("zt0", "10.147.17.5", 24),
        ];
        let rank = |ip: &str, all: bool| rank(ip.parse().unwrap(), &ours, all);
        assert_eq!(rank("192.168.1.30", false), Some(0));
        assert_eq!(rank("10.147.17.9", false), None, "ZeroTier's subnet");
        assert_eq!(rank("100.90.1.1", false), None, "Tailscale's range");
        assert_eq!(rank("172.16.5.5", false), Some(1), "another private LAN");
        assert_eq!(rank("2001:db8::5", false), Some(2));
        assert_eq!(rank("10.147.17.9", true), Some(3));
        assert_eq!(rank("100.90.1.1", true), Some(3));
    }
}

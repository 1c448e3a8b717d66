//! mDNS/DNS-SD discovery on the interfaces the user allows: announces this
//! peer, browses for others, and hands the addresses of each announcement
//! to the peer table ([`super::PeerDirectory`]).

/// The DNS-SD service type lanspread announces.
pub const SERVICE_TYPE: &str = "_lanspread._udp.local.";

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use tokio_util::sync::CancellationToken;

use super::{PeerDirectory, id_hex};
use crate::proto::PeerHello;

/// What discovery announces and where.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    /// Interface names; empty means every interface (but virtual and VPN
    /// adapters, unless `include_virtual`).
    pub interfaces: Vec<String>,
    /// Also announce on, and follow peers through, virtual and VPN adapters.
    pub include_virtual: bool,
}

/// Addresses followed per mDNS announcement, at most: a PC has one or two
/// LAN addresses; a spoofed announcement with thousands must not start
/// thousands of sessions.
pub const MAX_ADDRS_PER_ANNOUNCEMENT: usize = 4;
/// Announced instances followed, at most.
pub const MAX_ANNOUNCED_PEERS: usize = 256;

/// The addresses of one announcement that are followed, best first (see
/// [`crate::adapters::rank`]: our LAN's subnet, other IPv4, IPv6; those
/// reachable only through a virtual or VPN adapter left out unless
/// `include_virtual`), no IPv6 link-local (the endpoint cannot use a
/// scope), no duplicates, at most [`MAX_ADDRS_PER_ANNOUNCEMENT`].
pub fn announced_addrs(
    ips: impl Iterator<Item = IpAddr>,
    port: u16,
    ours: &[crate::adapters::LocalNet],
    include_virtual: bool,
) -> Vec<SocketAddr> {
    let mut usable: Vec<(u8, IpAddr)> = ips
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .take(MAX_ADDRS_PER_ANNOUNCEMENT * 16)
        .filter_map(|ip| crate::adapters::rank(ip, ours, include_virtual).map(|r| (r, ip)))
        .collect();
    usable.sort_unstable();
    usable.dedup();
    usable
        .into_iter()
        .take(MAX_ADDRS_PER_ANNOUNCEMENT)
        .map(|(_, ip)| SocketAddr::new(ip, port))
        .collect()
}

/// Runs mDNS until `shutdown`: announces this peer, browses for others and
/// hands their addresses to the directory.
pub async fn run_mdns(
    config: DiscoveryConfig,
    ours: PeerHello,
    directory: PeerDirectory,
    shutdown: CancellationToken,
) -> Result<(), mdns_sd::Error> {
    use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

    let daemon = ServiceDaemon::new()?;
    let our_nets = crate::adapters::local_nets();
    if !config.interfaces.is_empty() {
        daemon.disable_interface(IfKind::All)?;
        for name in &config.interfaces {
            daemon.enable_interface(IfKind::Name(name.clone()))?;
        }
    } else if !config.include_virtual {
        // Not announced on, nor heard through, virtual and VPN adapters.
        let mut skipped: Vec<&str> = our_nets
            .iter()
            .filter(|n| n.is_virtual)
            .map(|n| n.name.as_str())
            .collect();
        skipped.dedup();
        for name in skipped {
            tracing::debug!("mDNS skips the virtual or VPN adapter {name}");
            daemon.disable_interface(IfKind::Name(name.to_owned()))?;
        }
    }
    let instance = id_hex(&ours.peer_id);
    let host = format!("lanspread-{}.local.", &instance[..12]);
    let properties = [("id", instance.as_str()), ("proto", "1")];
    let service = ServiceInfo::new(
        SERVICE_TYPE,
        &instance,
        &host,
        "",
        ours.listen_port,
        &properties[..],
    )?
    .enable_addr_auto();
    let fullname = service.get_fullname().to_owned();
    daemon.register(service)?;
    let browse = daemon.browse(SERVICE_TYPE)?;
    // Addresses announced per instance, so a goodbye can end their sessions.
    let mut known: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
    loop {
        let event = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            event = browse.recv_async() => match event {
                Ok(event) => event,
                Err(_) => break,
            },
        };
        match event {
            ServiceEvent::ServiceResolved(info) => {
                if info.fullname == fullname {
                    continue;
                }
                if !known.contains_key(&info.fullname) && known.len() >= MAX_ANNOUNCED_PEERS {
                    tracing::debug!(name = %info.fullname, "ignoring an announcement: too many peers announced");
                    continue;
                }
                let addrs = announced_addrs(
                    info.addresses.iter().map(|ip| ip.to_ip_addr()),
                    info.port,
                    &our_nets,
                    config.include_virtual,
                );
                if !addrs.is_empty() {
                    directory.add_discovered_group(addrs.clone());
                }
                // Addresses it no longer announces are let go when none of
                // the old ones is left (its session is on one of them, and
                // the addresses of one peer share one session); otherwise
                // the session goes on, and a stale alternative is only
                // tried, and fails, if the current address stops answering.
                let old = known
                    .insert(info.fullname.clone(), addrs.clone())
                    .unwrap_or_default();
                if !old.iter().any(|a| addrs.contains(a)) {
                    for gone in old {
                        directory.forget(gone);
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, name) => {
                for addr in known.remove(&name).unwrap_or_default() {
                    directory.forget(addr);
                }
            }
            _ => {}
        }
    }
    let _ = daemon.unregister(&fullname);
    let _ = daemon.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_with_thousands_of_addresses_starts_a_few_sessions() {
        let flood = (0..5000u32).map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        let followed = announced_addrs(flood, 4747, &[], false);
        assert_eq!(followed.len(), MAX_ADDRS_PER_ANNOUNCEMENT);
        // IPv4 first, link-local IPv6 never, duplicates once.
        let mixed = [
            "fe80::1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        ];
        let followed = announced_addrs(mixed.into_iter(), 4747, &[], false);
        assert_eq!(
            followed,
            [
                "10.0.0.2:4747".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:4747".parse().unwrap()
            ]
        );
    }
}

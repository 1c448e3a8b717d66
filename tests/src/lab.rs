//! The LAN lab: a party of hosts built from network namespaces.
//!
//! Each host is a namespace with one interface, `eth0`, the end of a veth
//! pair created inside that namespace; the other end sits in the lab's
//! bridge namespace, enslaved to `br0`. Hosts get addresses in 10.77.0.0/24,
//! which exists only inside the lab. Nothing is ever added to, or sent on,
//! the machine's own interfaces. Every namespace is deleted when the lab is
//! dropped (a panicking test included), and labs left behind by a killed
//! test run are swept when the next lab starts.
//!
//! Needs root. [`Lab::new`] returns `None` (after printing why) when the lab
//! cannot run here, unless `LANSPREAD_REQUIRE_NETNS=1` is set (CI), where
//! that is a failure instead.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Set to `1` to turn "the lab cannot run here" into a test failure.
pub const REQUIRE_ENV: &str = "LANSPREAD_REQUIRE_NETNS";

/// Prefix of every namespace the lab creates: `lsl<pid>n<k>...`.
const PREFIX: &str = "lsl";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// One host of the lab.
#[derive(Debug, Clone)]
pub struct Host {
    pub namespace: String,
    pub ip: Ipv4Addr,
}

/// Counters of one shaper (`tc -s qdisc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaperStats {
    /// Bytes passed, link-layer headers of every segment included.
    pub bytes: u64,
    /// Packets passed (each segment of a GSO batch counts).
    pub packets: u64,
    /// Packets the shaper dropped because its queue was full.
    pub dropped: u64,
}

impl ShaperStats {
    /// Reads the first ` Sent B bytes P pkt (dropped D, ...` line.
    pub fn parse(text: &str) -> Option<Self> {
        let line = text.lines().find(|l| l.trim_start().starts_with("Sent "))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> Option<u64> {
            words
                .get(i)?
                .trim_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        };
        Some(Self {
            bytes: number(1)?,
            packets: number(3)?,
            dropped: number(6)?,
        })
    }

    /// The statistics of the bridge ports `p0`..`p<hosts-1>` from one
    /// `tc -s qdisc show` of the bridge namespace; a port without any reads
    /// as zero.
    pub fn parse_ports(text: &str, hosts: usize) -> Vec<Self> {
        let mut all = vec![Self::default(); hosts];
        // Each qdisc is a block starting `qdisc tbf 8001: dev p3 root ...`.
        for block in text.split("qdisc ").filter(|b| !b.trim().is_empty()) {
            let mut words = block.split_whitespace();
            let Some(dev) = words.find(|w| *w == "dev").and_then(|_| words.next()) else {
                continue;
            };
            let host = dev.strip_prefix('p').and_then(|n| n.parse::<usize>().ok());
            if let (Some(host), Some(stats)) = (host, Self::parse(block))
                && let Some(slot) = all.get_mut(host)
            {
                *slot = stats;
            }
        }
        all
    }

    /// The counts between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            bytes: self.bytes.saturating_sub(earlier.bytes),
            packets: self.packets.saturating_sub(earlier.packets),
            dropped: self.dropped.saturating_sub(earlier.dropped),
        }
    }
}

/// A running lab; removed when dropped.
#[derive(Debug)]
pub struct Lab {
    name: String,
    bridge: String,
    pub hosts: Vec<Host>,
    children: Vec<Child>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn why_not_here() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("the LAN lab needs root (network namespaces)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the LAN lab needs iproute2's `ip`".into());
    }
    None
}

/// Prints why the lab is skipped, or panics when the environment requires it.
fn skip(reason: &str) -> Option<Lab> {
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_ENV}=1 but the lab cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

/// Whether a root-only test may run here; prints why not (or panics when
/// [`REQUIRE_ENV`] says it must run).
pub fn root_or_skip() -> bool {
    match why_not_here() {
        None => true,
        Some(reason) => skip(&reason).is_some(),
    }
}

/// A small tmpfs mounted on a temporary folder (root): a disk that fills
/// up. Unmounted when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// A tmpfs of `size` (as `mount -o size=` takes it: `16m`).
    pub fn mount(size: &str) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("mount tmpfs: {status}")));
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Deletes namespaces of labs whose test process is gone.
fn sweep_stale_labs() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: Option<u32> = rest.split('n').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

impl Lab {
    /// Builds a lab of `hosts` hosts on one bridge, or says why it cannot.
    pub fn new(hosts: usize) -> Option<Lab> {
        if let Some(reason) = why_not_here() {
            return skip(&reason);
        }
        sweep_stale_labs();
        let k = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}n{k}", std::process::id());
        let mut lab = Lab {
            bridge: format!("{name}br"),
            name,
            hosts: Vec::new(),
            children: Vec::new(),
        };
        if let Err(err) = lab.build(hosts) {
            // Drop removes whatever was built.
            panic!("building the lab failed: {err}");
        }
        Some(lab)
    }

    fn build(&mut self, hosts: usize) -> Result<(), String> {
        assert!(hosts < 250, "one /24 per lab");
        let br = self.bridge.clone();
        run(&["ip", "netns", "add", &br])?;
        run(&["ip", "-n", &br, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..hosts {
            let ns = format!("{}h{i}", self.name);
            let ip = Ipv4Addr::new(10, 77, 0, (i + 1) as u8);
            run(&["ip", "netns", "add", &ns])?;
            self.hosts.push(Host {
                namespace: ns.clone(),
                ip,
            });
            let port = format!("p{i}");
            // The pair is created inside the host; its far end moves to the bridge.
            run(&[
                "ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                "netns", &br,
            ])?;
            run(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "224.0.0.0/4",
                "dev",
                "eth0",
            ])?;
        }
        Ok(())
    }

    /// A second, direct link between hosts `a` and `b`, an interface named
    /// `name` in both (a VPN-like adapter such as `tailscale0`), on
    /// 10.`subnet`.0.0/24: `a` gets .1, `b` .2.
    pub fn add_direct_link(
        &self,
        a: usize,
        b: usize,
        name: &str,
        subnet: u8,
    ) -> Result<(), String> {
        let (na, nb) = (&self.hosts[a].namespace, &self.hosts[b].namespace);
        run(&[
            "ip", "-n", na, "link", "add", name, "type", "veth", "peer", "name", name, "netns", nb,
        ])?;
        for (ns, last) in [(na, 1), (nb, 2)] {
            let cidr = format!("10.{subnet}.0.{last}/24");
            run(&["ip", "-n", ns, "addr", "add", &cidr, "dev", name])?;
            run(&["ip", "-n", ns, "link", "set", name, "up"])?;
        }
        Ok(())
    }

    /// A command that runs inside `host`'s namespace.
    pub fn command(&self, host: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[host].namespace, program]);
        cmd
    }

    /// Starts a long-running process in `host`; killed when the lab drops.
    pub fn spawn(&mut self, mut command: Command) -> std::io::Result<usize> {
        let child = command.spawn()?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// The process id of the process started as number `index`.
    pub fn child_id(&self, index: usize) -> u32 {
        self.children[index].id()
    }

    /// The process started by [`Lab::spawn`] as number `index`.
    pub fn child(&mut self, index: usize) -> &mut Child {
        &mut self.children[index]
    }

    /// Shapes `host`'s link (both directions) to `mbit` Mbit/s with tbf.
    /// The bucket holds 10 ms of traffic (at least 256 KiB): a smaller one
    /// cannot reach the nominal rate at gigabit speeds (the kernel refills
    /// it once per timer tick).
    pub fn shape(&self, host: usize, mbit: u32) -> Result<(), String> {
        let rate = format!("{mbit}mbit");
        let burst_bytes = (u64::from(mbit) * 125_000 / 100).max(256 * 1024);
        let burst = format!("{burst_bytes}b");
        let ns = &self.hosts[host].namespace;
        let port = format!("p{host}");
        for (namespace, device) in [(ns.as_str(), "eth0"), (self.bridge.as_str(), port.as_str())] {
            run(&[
                "ip", "netns", "exec", namespace, "tc", "qdisc", "replace", "dev", device, "root",
                "tbf", "rate", &rate, "burst", &burst, "latency", "50ms",
            ])?;
        }
        Ok(())
    }

    /// What the shaper on the bridge side of `host`'s link has passed toward
    /// `host` so far. The kernel counts every segment of a GSO batch with
    /// its own headers here, as the link would carry them (an interface's
    /// `rx_bytes` counts a batch's headers once, which hides most of QUIC's
    /// overhead).
    pub fn delivered(&self, host: usize) -> Result<ShaperStats, String> {
        let port = format!("p{host}");
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.bridge,
                "tc",
                "-s",
                "qdisc",
                "show",
                "dev",
                &port,
            ])
            .output()
            .map_err(|e| format!("tc: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        ShaperStats::parse(&text).ok_or_else(|| format!("no shaper statistics in: {text}"))
    }

    /// [`Lab::delivered`] for every host at once (one `tc` run), in host
    /// order; a host without statistics reads as zero.
    pub fn delivered_all(&self) -> Result<Vec<ShaperStats>, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.bridge, "tc", "-s", "qdisc", "show"])
            .output()
            .map_err(|e| format!("tc: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(ShaperStats::parse_ports(&text, self.hosts.len()))
    }

    /// What the shaper on `host`'s own `eth0` has passed from `host` onto
    /// the LAN so far (its upload, every segment with its headers).
    pub fn sent(&self, host: usize) -> Result<ShaperStats, String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[host].namespace,
                "tc",
                "-s",
                "qdisc",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .map_err(|e| format!("tc: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        ShaperStats::parse(&text).ok_or_else(|| format!("no shaper statistics in: {text}"))
    }

    /// Pulls or plugs `host`'s cable.
    pub fn set_link(&self, host: usize, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        run(&[
            "ip",
            "-n",
            &self.bridge,
            "link",
            "set",
            &format!("p{host}"),
            state,
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for host in &self.hosts {
            let _ = run(&["ip", "netns", "del", &host.namespace]);
        }
        let _ = run(&["ip", "netns", "del", &self.bridge]);
    }
}

#[cfg(test)]
mod tests {
    use super::ShaperStats;

    #[test]
    fn shaper_stats_are_read_from_tc_output() {
        let text = "qdisc tbf 8001: root refcnt 2 rate 1Gbit burst 1250000b lat 50ms \n \
                    Sent 812345678 bytes 543210 pkt (dropped 12, overlimits 3456 requeues 0) \n \
                    backlog 0b 0p requeues 0\n";
        let stats = ShaperStats::parse(text).unwrap();
        assert_eq!(
            stats,
            ShaperStats {
                bytes: 812_345_678,
                packets: 543_210,
                dropped: 12
            }
        );
        let earlier = ShaperStats {
            bytes: 345_678,
            packets: 210,
            dropped: 2,
        };
        assert_eq!(stats.since(earlier).bytes, 812_000_000);
        assert_eq!(stats.since(earlier).dropped, 10);
        assert!(ShaperStats::parse("qdisc noqueue 0: root").is_none());
    }

    #[test]
    fn every_ports_stats_are_read_from_one_tc_output() {
        let text = "qdisc noqueue 0: dev br0 root refcnt 2 \n \
                    Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n\
                    qdisc tbf 8002: dev p1 root refcnt 2 rate 50Mbit burst 256Kb lat 50ms \n \
                    Sent 2000 bytes 2 pkt (dropped 1, overlimits 0 requeues 0) \n \
                    backlog 0b 0p requeues 0\n\
                    qdisc tbf 8001: dev p0 root refcnt 2 rate 50Mbit burst 256Kb lat 50ms \n \
                    Sent 1000 bytes 1 pkt (dropped 0, overlimits 0 requeues 0) \n";
        let all = ShaperStats::parse_ports(text, 3);
        assert_eq!(all[0].bytes, 1000);
        assert_eq!(all[1].bytes, 2000);
        assert_eq!(all[1].dropped, 1);
        assert_eq!(all[2], ShaperStats::default());
    }
}

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

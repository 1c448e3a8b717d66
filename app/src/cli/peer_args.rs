//! Options shared by the subcommands that run a peer.

use lanspread_net::discovery::DiscoveryConfig;

/// How to find other PCs.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// A peer to connect to by address (repeatable), for networks that block multicast.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Do not use mDNS: only the --peer addresses are contacted.
    #[arg(long)]
    pub no_discovery: bool,
    /// Restrict mDNS to this network interface (repeatable; default: all
    /// but virtual and VPN adapters).
    #[arg(long = "interface", value_name = "NAME")]
    pub interfaces: Vec<String>,
    /// Also use virtual and VPN adapters (Hyper-V, WSL, Docker, Tailscale,
    /// ZeroTier, …) to find and reach peers.
    #[arg(long)]
    pub virtual_adapters: bool,
    /// Cap all uploads of this PC together, in Mbit/s.
    #[arg(long, value_name = "MBIT")]
    pub upload_limit: Option<f64>,
}

impl PeerArgs {
    /// The upload cap in bytes per second.
    pub fn upload_limit_bytes_per_sec(&self) -> Option<u64> {
        self.upload_limit
            .filter(|mbit| *mbit > 0.0)
            .map(|mbit| (mbit * 125_000.0) as u64)
    }

    pub fn discovery(&self) -> DiscoveryConfig {
        DiscoveryConfig {
            enabled: !self.no_discovery,
            interfaces: self.interfaces.clone(),
            include_virtual: self.virtual_adapters,
        }
    }
}

/// The name other PCs see by default: the computer's name.
pub fn default_display_name() -> String {
    // The computer's real name, as the system says it (not environment
    // variables, which a shell may not export).
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_owned();
    if name.is_empty() {
        "lanspread PC".to_owned()
    } else {
        name
    }
}

//! What the runtime is started with and what it publishes: the config, the
//! state the window draws every frame, and the event stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lanspread_core::{GameCatalog, GameId, TransfersSnapshot};

use crate::discovery::{DiscoveryConfig, RemotePeer};
use crate::download::DownloadProgress;
use crate::proto::AnnouncedGame;

/// What to run.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The games folder to share; `None` shares nothing (a pure client).
    pub games_dir: Option<PathBuf>,
    /// The data folder: store, lock and control socket. `None` runs with an
    /// identity made for this run only and no control socket.
    pub data_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    pub name: String,
    pub manual_peers: Vec<String>,
    pub discovery: DiscoveryConfig,
    pub catalog: GameCatalog,
    /// Cap on all uploads together, in bytes per second (changed live
    /// with [`Command::SetSharing`]).
    pub upload_limit_bytes_per_sec: Option<u64>,
    /// What sharing does while a game started from this lanspread runs.
    pub while_playing: lanspread_core::WhilePlaying,
}

impl PeerConfig {
    /// A config with discovery off, listening on loopback on any port.
    pub fn loopback(catalog: GameCatalog) -> Self {
        Self {
            games_dir: None,
            data_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            name: "lanspread".into(),
            manual_peers: Vec::new(),
            discovery: DiscoveryConfig::default(),
            catalog,
            upload_limit_bytes_per_sec: None,
            while_playing: lanspread_core::WhilePlaying::KeepSharing,
        }
    }
}

/// What the runtime publishes; the GUI draws from it every frame.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub listen_addr: Option<SocketAddr>,
    pub peer_id: String,
    pub name: String,
    /// Peers by id.
    pub peers: BTreeMap<String, RemotePeer>,
    /// What we announce.
    pub local_games: Vec<AnnouncedGame>,
    /// Live outbound transfers and active operations.
    pub transfers: TransfersSnapshot,
    /// Downloads running or just ended, by game id.
    pub downloads: BTreeMap<String, DownloadProgress>,
    /// The games folder this peer shares.
    pub games_dir: Option<PathBuf>,
    /// Chunk transfers this peer has sent completely since it started.
    pub chunks_served: u64,
    /// The last scan of the games folder.
    pub library: Option<Arc<lanspread_core::LibraryScan>>,
    /// When a peer last joined, left or changed what it offers (a download
    /// votes once the table has been quiet for a moment).
    pub table_changed_at: Option<std::time::Instant>,
    /// Typed-in addresses whose first attempt has not ended yet: not
    /// answered with a library, not failed (a download waits for them,
    /// for a bounded time, before it votes).
    pub unanswered_typed: std::collections::BTreeSet<SocketAddr>,
    /// The same for addresses learned by peer exchange.
    pub unanswered_exchanged: std::collections::BTreeSet<SocketAddr>,
    /// Whether mDNS discovery runs (peers may appear at any time).
    pub discovery_enabled: bool,
    /// A game being hashed now, if any.
    pub hashing: Option<crate::library::HashingProgress>,
    /// What updating a game would move, by game id, with the catalog
    /// version it was worked out for.
    pub update_plans: BTreeMap<String, (String, crate::download::UpdatePlan)>,
    /// Games started from this lanspread (Play) whose process still runs.
    pub running: std::collections::BTreeSet<GameId>,
    /// The upload limit and pause in force now.
    pub sharing: lanspread_core::SharingInForce,
    /// Some peer connected to this PC since it started (so the others can
    /// reach it: no firewall in the way).
    pub reached_by_peers: bool,
    /// This PC reaches peers, but for [`UNREACHED_AFTER`] none has
    /// connected to it: a firewall (Windows Firewall on a network classed
    /// Public) probably blocks lanspread. It downloads but never seeds.
    pub maybe_firewalled: bool,
}

/// Something that happened, for logs and the GUI.
#[derive(Debug, Clone)]
pub enum Event {
    PeerJoined {
        id: String,
        name: String,
        addr: SocketAddr,
    },
    PeerLeft {
        id: String,
    },
    RemoteLibraryChanged {
        id: String,
    },
    LocalLibraryChanged {
        revision: u64,
    },
    /// Outbound transfer counts or active operations changed.
    Transfers(TransfersSnapshot),
    /// A download moved on.
    Download(DownloadProgress),
}

//! What the window draws, worked out from the published state: one
//! [`GameView`] per catalog game, and the commands the window can send.
//! Pure functions of the state, so every frame agrees with the runtime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use lanspread_core::{CatalogEntry, GameCatalog, GameId, GameState, Settings};
use lanspread_net::discovery::RemotePeer;
use lanspread_net::download::{DownloadProgress, Phase};
use lanspread_net::proto::AnnouncedGame;
use lanspread_net::{PeerState, Request};

/// Everything one frame draws from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub catalog: Arc<GameCatalog>,
    pub peer: PeerState,
}

/// What the window asks for: a request to the peer (the one vocabulary,
/// [`Request`]), or something the window's own process does.
#[derive(Debug, Clone, PartialEq)]
pub enum UiCommand {
    Peer(Request),
    /// Open a folder in the system's file manager.
    OpenFolder(PathBuf),
    SaveSettings(Settings),
    StartDemo,
}

/// A game's state as a card shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum CardState {
    /// Not here; `peers` PCs have the catalog's version.
    NotHere,
    /// Not here and no PC on the LAN has the catalog's version.
    OnNoPeer,
    Downloading(DownloadProgress),
    Incomplete,
    Downloaded,
    Installed,
    UpdateAvailable,
    /// Here at a version newer than the catalog's: "updating" would go
    /// back to the catalog's version.
    Differs,
}

/// Whether this PC shares a game, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sharing {
    /// Announced to peers; `uploads` peers are downloading it from us now.
    Shared { uploads: usize },
    /// Not shared, with the reason in words.
    NotShared(String),
    /// An update or remove is running: hidden from peers for now.
    Paused,
}

/// One catalog game, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct GameView {
    pub id: GameId,
    pub title: String,
    pub genre: String,
    pub max_players: u32,
    pub description: String,
    pub catalog_version: String,
    /// The organiser's catalog pins the right copy's manifest: downloads
    /// are verified against it, not voted.
    pub pinned: bool,
    pub local_version: Option<String>,
    pub size_bytes: u64,
    pub state: CardState,
    /// Peers announcing the catalog's version.
    pub peers_with_version: usize,
    /// Names of those peers.
    pub peer_names: Vec<String>,
    pub sharing: Sharing,
    pub installed: bool,
    pub local_dir: Option<PathBuf>,
    /// The cover the catalog names, if any.
    pub cover: Option<String>,
    /// What updating would move, once the new manifest is known.
    pub update_plan: Option<lanspread_net::download::UpdatePlan>,
    /// Every other PC that announces the game, at whatever version, by name.
    pub holders: Vec<Holder>,
    /// Other PCs (hosts, not instances) holding the catalog's version whole.
    pub other_hosts_with_version: usize,
    /// This PC holds the catalog's version whole.
    pub here_whole: bool,
    /// Names of the PCs downloading the game from this PC now.
    pub receivers: Vec<String>,
    /// Installed, and the catalog says how to start it on this platform.
    pub can_play: bool,
    /// Started from here and still running.
    pub running: bool,
}

/// One PC that has a game, and what of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub has: HolderHas,
}

/// What a PC holds of a game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderHas {
    /// The catalog's version, whole.
    CatalogVersion,
    /// Another version, whole (its catalog names another one).
    OtherVersion(String),
    /// Downloading the catalog's version: this percentage is verified.
    Partial(u8),
}

impl HolderHas {
    pub fn words(&self) -> String {
        match self {
            HolderHas::CatalogVersion => "the catalog's version".to_owned(),
            HolderHas::OtherVersion(version) => format!("version {version} (not the catalog's)"),
            HolderHas::Partial(percent) => format!("downloading it, {percent} % so far"),
        }
    }
}

impl GameView {
    /// The view of one game; `lan` is [`LanIndex::new`] of the same state.
    pub fn build(entry: &CatalogEntry, peer: &PeerState, lan: &LanIndex<'_>) -> Self {
        let local = peer.library.as_ref().and_then(|scan| scan.get(&entry.id));
        let game_state = peer
            .library
            .as_ref()
            .map_or(GameState::Missing, |scan| scan.state_of(&entry.id));
        let announcing = lan.holders.get(&entry.id).map_or(&[][..], Vec::as_slice);
        let holders: Vec<(&RemotePeer, &AnnouncedGame)> = announcing
            .iter()
            .filter(|(_, g)| g.is_whole() && g.version == entry.version)
            .copied()
            .collect();
        let other_hosts_with_version = holders
            .iter()
            .map(|(p, _)| p.addr.ip())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let announced_size = holders.first().map(|(_, g)| g.total_bytes).or_else(|| {
            peer.local_games
                .iter()
                .find(|g| g.id == entry.id && g.version == entry.version)
                .map(|g| g.total_bytes)
        });
        let download = peer
            .downloads
            .get(entry.id.as_str())
            .filter(|d| !matches!(d.phase, Phase::Done | Phase::Failed));
        let state = match (download, game_state) {
            (Some(progress), _) => CardState::Downloading(progress.clone()),
            (None, GameState::Installed)
                if local.is_some_and(|l| l.payload == lanspread_core::PayloadState::Outdated) =>
            {
                CardState::UpdateAvailable
            }
            (None, GameState::DiffersFromCatalog) => CardState::Differs,
            (None, GameState::Installed) => CardState::Installed,
            (None, GameState::Downloaded) => CardState::Downloaded,
            (None, GameState::UpdateAvailable) => CardState::UpdateAvailable,
            (None, GameState::Incomplete) => CardState::Incomplete,
            (None, GameState::Missing) if holders.is_empty() => CardState::OnNoPeer,
            (None, GameState::Missing) => CardState::NotHere,
        };
        let uploads = peer.transfers.outbound_count(&entry.id);
        let announced = peer.local_games.iter().any(|g| g.id == entry.id);
        let sharing = if peer.transfers.is_active(&entry.id) {
            Sharing::Paused
        } else if announced {
            Sharing::Shared { uploads }
        } else {
            Sharing::NotShared(match &state {
                CardState::UpdateAvailable => {
                    "an older version: only the catalog's version is shared".to_owned()
                }
                CardState::Differs => {
                    "another version than the catalog's: only the catalog's version is shared"
                        .to_owned()
                }
                CardState::Incomplete => "the download is not complete".to_owned(),
                CardState::Downloaded | CardState::Installed => {
                    "still checking the files".to_owned()
                }
                CardState::Downloading(_) => "still downloading".to_owned(),
                CardState::NotHere | CardState::OnNoPeer => "not on this PC".to_owned(),
            })
        };
        let names: HashMap<&str, &str> = peer
            .peers
            .values()
            .map(|p| (p.id.as_str(), p.name.as_str()))
            .collect();
        let receivers = peer
            .transfers
            .receivers_of(&entry.id)
            .map(|id| {
                names
                    .get(id)
                    .map_or_else(|| "a PC".to_owned(), |n| (*n).to_owned())
            })
            .collect();
        let here_whole = local.is_some_and(lanspread_core::LocalGame::shareable);
        Self {
            id: entry.id.clone(),
            title: entry.title.clone(),
            genre: entry.genre.clone(),
            max_players: entry.max_players,
            description: entry.description.clone(),
            catalog_version: entry.version.to_string(),
            pinned: entry.pinned_manifest().is_some(),
            local_version: local.and_then(|l| l.local_version.as_ref().map(ToString::to_string)),
            size_bytes: announced_size.unwrap_or(entry.approx_size_mib * 1024 * 1024),
            peers_with_version: holders.len(),
            peer_names: holders.iter().map(|(p, _)| p.name.clone()).collect(),
            holders: announcing
                .iter()
                .map(|(p, g)| Holder {
                    name: p.name.clone(),
                    has: match &g.partial {
                        Some(partial) => {
                            let chunks = partial.have.chunks().max(1);
                            let percent = partial.have.count() * 100 / chunks;
                            HolderHas::Partial(u8::try_from(percent.min(100)).unwrap_or(100))
                        }
                        None if g.version == entry.version => HolderHas::CatalogVersion,
                        None => HolderHas::OtherVersion(g.version.to_string()),
                    },
                })
                .collect(),
            other_hosts_with_version,
            here_whole,
            receivers,
            can_play: local.is_some_and(|l| l.installed)
                && lanspread_core::launch::entry_for(&entry.launch, std::env::consts::OS).is_some(),
            running: peer.running.contains(&entry.id),
            state,
            sharing,
            installed: local.is_some_and(|l| l.installed),
            cover: entry.cover.clone(),
            update_plan: peer
                .update_plans
                .get(entry.id.as_str())
                .filter(|(version, _)| *version == entry.version.as_str())
                .map(|(_, plan)| *plan),
            local_dir: peer
                .games_dir
                .as_ref()
                .map(|dir| lanspread_core::layout::local_dir(dir, &entry.id)),
        }
    }

    /// "ready on 5 PCs" and friends.
    pub fn availability(&self) -> String {
        match self.peers_with_version {
            0 => "on no PC right now".to_owned(),
            1 => "ready on 1 PC".to_owned(),
            n => format!("ready on {n} PCs"),
        }
    }

    /// The state in a few words.
    pub fn state_words(&self) -> String {
        match &self.state {
            CardState::NotHere => "not here".to_owned(),
            CardState::OnNoPeer => "on no peer".to_owned(),
            CardState::Downloading(p) => {
                let percent = (p.done_bytes * 100).checked_div(p.total_bytes).unwrap_or(0);
                format!("downloading {percent}%")
            }
            CardState::Incomplete => "incomplete".to_owned(),
            CardState::Downloaded => "downloaded".to_owned(),
            CardState::Installed => "installed".to_owned(),
            CardState::UpdateAvailable => "update available".to_owned(),
            CardState::Differs => format!(
                "differs from the catalog ({} here, catalog {})",
                self.local_version.as_deref().unwrap_or("?"),
                self.catalog_version
            ),
        }
    }

    /// The sharing indicator in a few words.
    pub fn sharing_words(&self) -> String {
        match &self.sharing {
            Sharing::Shared { uploads: 0 } => "shared".to_owned(),
            Sharing::Shared { uploads: 1 } => "shared · uploading to 1 PC now".to_owned(),
            Sharing::Shared { uploads } => format!("shared · uploading to {uploads} PCs now"),
            Sharing::NotShared(why) => format!("not shared: {why}"),
            Sharing::Paused => "not shared while it is being changed".to_owned(),
        }
    }

    pub fn uploads(&self) -> usize {
        match self.sharing {
            Sharing::Shared { uploads } => uploads,
            _ => 0,
        }
    }
}

/// Who on the LAN announces which game, built once per frame so that a
/// catalog of thousands of games and fifty peers costs one pass.
#[derive(Debug, Default)]
pub struct LanIndex<'a> {
    holders: HashMap<&'a GameId, Vec<(&'a RemotePeer, &'a AnnouncedGame)>>,
}

impl<'a> LanIndex<'a> {
    pub fn new(peer: &'a PeerState) -> Self {
        let mut holders: HashMap<&GameId, Vec<(&RemotePeer, &AnnouncedGame)>> = HashMap::new();
        for remote in peer.peers.values() {
            // Partial peers (still downloading) are listed too; counts of
            // PCs that "have" a game take whole copies only.
            for game in &remote.games {
                holders.entry(&game.id).or_default().push((remote, game));
            }
        }
        Self { holders }
    }
}

/// The views of every catalog game.
pub fn game_views(snapshot: &Snapshot) -> Vec<GameView> {
    let lan = LanIndex::new(&snapshot.peer);
    snapshot
        .catalog
        .entries()
        .map(|entry| GameView::build(entry, &snapshot.peer, &lan))
        .collect()
}

/// The view of one game.
pub fn game_view(snapshot: &Snapshot, id: &GameId) -> Option<GameView> {
    let entry = snapshot.catalog.get(id)?;
    Some(GameView::build(
        entry,
        &snapshot.peer,
        &LanIndex::new(&snapshot.peer),
    ))
}

//! `lanspread peers` and `lanspread list`: a short-lived peer that looks
//! around the LAN and reports what it found.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use lanspread_core::GameCatalog;
use lanspread_net::{PeerConfig, PeerHandle, PeerState};
use serde::Serialize;

use super::peer_args::{PeerArgs, default_display_name};
use crate::GlobalArgs;
use crate::context::{catalog_for_cli, human_size_mib, init_logging};

/// How long to listen for mDNS announcements.
const DISCOVERY_WAIT: Duration = Duration::from_secs(3);
/// How long to wait for manual peers when discovery is off.
const MANUAL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct LanArgs {
    #[command(flatten)]
    peers: PeerArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Starts a peer that shares nothing, waits until the LAN has answered, and
/// returns what it saw.
fn look_around(global: &GlobalArgs, args: &LanArgs) -> anyhow::Result<(GameCatalog, PeerState)> {
    init_logging("warn");
    let catalog = catalog_for_cli(global)?;
    let mut config = PeerConfig::loopback(catalog.clone());
    config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    config.name = default_display_name();
    config.manual_peers = args.peers.peers.clone();
    config.discovery = args.peers.discovery();
    let peer = PeerHandle::start(config, None)?;
    let wanted = args.peers.peers.len();
    let manual_only = args.peers.no_discovery;
    let wait = if manual_only {
        MANUAL_WAIT
    } else {
        DISCOVERY_WAIT
    };
    // With discovery on, listen for the whole window: announcements trickle in.
    peer.wait_until(wait, |state| {
        let answered = state.peers.values().all(|p| p.library_revision.is_some());
        manual_only && answered && state.peers.len() >= wanted
    });
    let seen = peer.state();
    peer.shutdown();
    Ok((catalog, seen))
}

#[derive(Debug, Serialize)]
struct PeerRow {
    id: String,
    name: String,
    addr: SocketAddr,
    /// Shareable games it announces.
    games: usize,
    same_catalog: bool,
}

pub fn run_peers(global: &GlobalArgs, args: &LanArgs) -> anyhow::Result<()> {
    let (_, state) = look_around(global, args)?;
    let rows: Vec<PeerRow> = state
        .peers
        .values()
        .map(|p| PeerRow {
            id: p.id.clone(),
            name: p.name.clone(),
            addr: p.addr,
            games: p.games.iter().filter(|g| g.is_whole()).count(),
            same_catalog: p.same_catalog,
        })
        .collect();
    if args.json {
        return super::emit(&(serde_json::to_string_pretty(&rows)? + "\n"));
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.addr.to_string(),
                r.games.to_string(),
                r.id.clone(),
            ]
        })
        .collect();
    let mut out = super::format_table(&["NAME", "ADDRESS", "GAMES", "ID"], &table);
    out.push_str(&format!("\n{} peers found\n", rows.len()));
    super::emit(&out)
}

#[derive(Debug, Serialize)]
struct GameRow {
    id: String,
    title: String,
    /// The catalog's version.
    version: String,
    /// Peers serving the catalog's version.
    peers: usize,
    /// Peers announcing another version (not used for downloads).
    other_versions: usize,
    total_bytes: Option<u64>,
}

pub fn run_list(global: &GlobalArgs, args: &LanArgs) -> anyhow::Result<()> {
    let (catalog, state) = look_around(global, args)?;
    let mut rows: BTreeMap<String, GameRow> = BTreeMap::new();
    for peer in state.peers.values() {
        for game in peer.games.iter().filter(|g| g.is_whole()) {
            let Some(entry) = catalog.get(&game.id) else {
                continue;
            };
            let row = rows.entry(game.id.to_string()).or_insert_with(|| GameRow {
                id: game.id.to_string(),
                title: entry.title.clone(),
                version: entry.version.to_string(),
                peers: 0,
                other_versions: 0,
                total_bytes: None,
            });
            if game.version == entry.version {
                row.peers += 1;
                row.total_bytes = Some(game.total_bytes);
            } else {
                row.other_versions += 1;
            }
        }
    }
    let rows: Vec<GameRow> = rows.into_values().collect();
    if args.json {
        return super::emit(&(serde_json::to_string_pretty(&rows)? + "\n"));
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.title.clone(),
                r.version.clone(),
                r.peers.to_string(),
                r.total_bytes
                    .map_or_else(|| "-".to_owned(), |b| human_size_mib(b.div_ceil(1 << 20))),
            ]
        })
        .collect();
    let mut out = super::format_table(&["ID", "TITLE", "VERSION", "PEERS", "SIZE"], &table);
    out.push_str(&format!(
        "\n{} games on {} peers\n",
        rows.len(),
        state.peers.len()
    ));
    super::emit(&out)
}

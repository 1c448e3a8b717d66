//! `lanspread serve --games DIR`: a peer without a window, until Ctrl-C.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use lanspread_core::store::resolve_data_dir;
use lanspread_net::{PeerConfig, PeerHandle};

use super::peer_args::{PeerArgs, default_display_name};
use crate::GlobalArgs;
use crate::context::{catalog_for_cli, init_logging};

/// The port lanspread listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4747;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The games folder to share.
    #[arg(long, value_name = "DIR")]
    games: PathBuf,
    /// Where to listen (UDP). Port 0 picks a free one; the chosen address is printed.
    #[arg(long, value_name = "ADDR:PORT", default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
    listen: SocketAddr,
    /// The name other PCs see (default: this computer's name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    peers: PeerArgs,
    /// While a game started with `lanspread play` runs: `keep` sharing,
    /// `pause` it, or limit uploads to N Mbit/s.
    #[arg(long, value_name = "keep|pause|MBIT", default_value = "keep", value_parser = parse_while_playing)]
    while_playing: lanspread_core::WhilePlaying,
}

fn parse_while_playing(raw: &str) -> Result<lanspread_core::WhilePlaying, String> {
    use lanspread_core::WhilePlaying;
    match raw {
        "keep" => Ok(WhilePlaying::KeepSharing),
        "pause" => Ok(WhilePlaying::Pause),
        mbit => mbit
            .parse::<u32>()
            .ok()
            .filter(|m| *m > 0)
            .map(WhilePlaying::LimitMbit)
            .ok_or_else(|| format!("{raw:?}: say keep, pause or a number of Mbit/s")),
    }
}

pub fn run(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    init_logging("info");
    let catalog = catalog_for_cli(global)?;
    if !args.games.is_dir() {
        anyhow::bail!(
            "the games folder {} does not exist; create it or pass another --games DIR",
            args.games.display()
        );
    }
    let config = PeerConfig {
        games_dir: Some(args.games.clone()),
        data_dir: Some(resolve_data_dir(global.data.as_deref())),
        listen: args.listen,
        name: args.name.clone().unwrap_or_else(default_display_name),
        manual_peers: args.peers.peers.clone(),
        discovery: args.peers.discovery(),
        catalog,
        upload_limit_bytes_per_sec: args.peers.upload_limit_bytes_per_sec(),
        while_playing: args.while_playing,
    };
    let peer = PeerHandle::start(config, None)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    runtime.block_on(async {
        // The handler is in place before the address is printed: a Ctrl-C
        // right after that line stops the peer cleanly too. (Its first poll
        // installs it.)
        let mut ctrl_c = std::pin::pin!(crate::platform::stop_requested());
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(ctrl_c.as_mut().poll(cx))
        })
        .await;
        if let std::task::Poll::Ready(result) = first {
            return result.context("waiting for Ctrl-C or SIGTERM");
        }
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "listening on {}", peer.listen_addr())?;
            stdout.flush()?;
        }
        tracing::info!(peer = %peer.peer_id(), games = %args.games.display(), "serving; Ctrl-C stops");
        ctrl_c.await.context("waiting for Ctrl-C or SIGTERM")
    })?;
    tracing::info!("stopping");
    peer.shutdown();
    Ok(())
}

//! `lanspread get|install|uninstall|remove|update ID`: carried out by the
//! peer running on the data folder, through its control socket, so its
//! transfer guards coordinate them with its uploads. When none runs, the
//! command starts its own peer for the duration (which serves too) and talks
//! to it the same way: one code path, never two processes on one folder.

use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use lanspread_core::GameId;
use lanspread_core::store::resolve_data_dir;
use lanspread_net::control;
use lanspread_net::download::{DownloadProgress, DownloadReport, Phase};
use lanspread_net::{PeerConfig, PeerHandle, Reply, Request};

use super::peer_args::{PeerArgs, default_display_name};
use crate::GlobalArgs;
use crate::context::{UsageError, catalog_for_cli, human_bytes, init_logging};

#[derive(Debug, clap::Args)]
pub struct OpArgs {
    /// The game id (see `lanspread catalog`).
    id: String,
    /// The games folder (needed when no lanspread runs on the data folder).
    #[arg(long, value_name = "DIR")]
    games: Option<PathBuf>,
    /// Where this command's own peer listens, when it needs one.
    #[arg(long, value_name = "ADDR:PORT", default_value_t = SocketAddr::from(([0, 0, 0, 0], 0)))]
    listen: SocketAddr,
    #[command(flatten)]
    peers: PeerArgs,
    /// Print the result as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    op: OpArgs,
    /// Keep the installed game (`local/`); delete only the payload.
    #[arg(long)]
    keep_local: bool,
}

pub fn run_remove(global: &GlobalArgs, args: &RemoveArgs) -> anyhow::Result<()> {
    let keep_local = args.keep_local;
    run(global, &args.op, |game| Request::Remove {
        game,
        keep_local,
    })
}

/// Runs the request `make` builds for the game named on the command line.
pub fn run(
    global: &GlobalArgs,
    args: &OpArgs,
    make: impl FnOnce(GameId) -> Request,
) -> anyhow::Result<()> {
    init_logging("warn");
    let catalog = catalog_for_cli(global)?;
    let game = GameId::parse(&args.id).map_err(|err| UsageError(err.to_string()))?;
    let known = catalog.get(&game).is_some();
    let request = make(game);
    if !known && !matches!(request, Request::Remove { .. }) {
        bail!(
            "{} is not in the catalog; `lanspread catalog` lists the games",
            args.id
        );
    }
    let data_dir = resolve_data_dir(global.data.as_deref());
    let _own_peer = if control::is_running(&data_dir) {
        check_same_games_dir(&data_dir, args.games.as_deref())?;
        None
    } else {
        let Some(games) = &args.games else {
            bail!(
                "no lanspread runs on the data folder {}; pass --games DIR to run this on its own",
                data_dir.display()
            );
        };
        let config = PeerConfig {
            games_dir: Some(games.clone()),
            data_dir: Some(data_dir.clone()),
            listen: args.listen,
            name: default_display_name(),
            manual_peers: args.peers.peers.clone(),
            discovery: args.peers.discovery(),
            catalog,
            upload_limit_bytes_per_sec: args.peers.upload_limit_bytes_per_sec(),
            while_playing: lanspread_core::WhilePlaying::KeepSharing,
        };
        Some(PeerHandle::start(config, None)?)
    };
    let mut display = ProgressDisplay::new();
    let answer = control::request_with_progress(&data_dir, request, |p| display.show(p));
    display.finish();
    let mut stdout = std::io::stdout().lock();
    match answer? {
        Reply::Downloaded(report) => {
            if args.json {
                writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
            } else {
                write_report(&mut stdout, &report)?;
            }
        }
        reply => {
            let message = reply.into_message()?;
            if args.json {
                writeln!(
                    stdout,
                    "{}",
                    serde_json::json!({ "id": args.id, "message": message })
                )?;
            } else {
                writeln!(stdout, "{message}")?;
            }
        }
    }
    Ok(())
}

fn write_report(out: &mut impl std::io::Write, report: &DownloadReport) -> std::io::Result<()> {
    if report.total_pieces == 0 {
        return writeln!(out, "{} {} is already here", report.id, report.version);
    }
    writeln!(
        out,
        "{} {} complete: {} fetched in {:.1}s from {} peers",
        report.id,
        report.version,
        human_bytes(report.bytes),
        report.seconds,
        report.peers.iter().filter(|p| p.bytes > 0).count()
    )?;
    for peer in &report.peers {
        let note = peer
            .reason
            .as_deref()
            .map(|r| format!(" (dropped: {r})"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {} {}: {}{note}",
            peer.name,
            peer.addr,
            human_bytes(peer.bytes)
        )?;
    }
    Ok(())
}

/// A running peer on another games folder must not be handed this one.
pub(crate) fn check_same_games_dir(data_dir: &Path, games: Option<&Path>) -> anyhow::Result<()> {
    let Some(games) = games else { return Ok(()) };
    let running = control::request(data_dir, Request::Status)?
        .into_status()?
        .games_dir;
    let same = match (&running, games.canonicalize().ok()) {
        (Some(running), Some(ours)) => running.canonicalize().ok().as_ref() == Some(&ours),
        _ => false,
    };
    if !same {
        bail!(
            "the lanspread running on {} shares {}, not {}",
            data_dir.display(),
            running.map_or_else(|| "no games folder".to_owned(), |p| p.display().to_string()),
            games.display()
        );
    }
    Ok(())
}

/// Progress on stderr: a line redrawn in place on a terminal, a line per
/// second otherwise.
struct ProgressDisplay {
    terminal: bool,
    last_line: Option<Instant>,
    drawn: bool,
}

impl ProgressDisplay {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
            drawn: false,
        }
    }

    fn show(&mut self, p: &DownloadProgress) {
        let percent = if p.total_bytes > 0 {
            p.done_bytes as f64 * 100.0 / p.total_bytes as f64
        } else {
            0.0
        };
        let phase = p.phase.label();
        let eta = p.eta_secs.map_or_else(String::new, |s| {
            format!(", {} left", crate::context::human_duration(s))
        });
        let reused = if p.reused_bytes > 0 {
            format!(", {} reused", human_bytes(p.reused_bytes))
        } else {
            String::new()
        };
        let text = format!(
            "{} {}: {phase} {percent:5.1}% of {} at {}/s from {} peers{reused}{eta}",
            p.game,
            p.version,
            human_bytes(p.total_bytes),
            human_bytes(p.bytes_per_sec as u64),
            p.peers_in_use()
        );
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K{text}");
            let _ = stderr.flush();
            self.drawn = true;
        } else if self
            .last_line
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1) || p.phase != Phase::Fetching)
        {
            let _ = writeln!(stderr, "{text}");
            self.last_line = Some(Instant::now());
        }
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `lanspread catalog load FILE`: hands the running peer a newer catalog.
pub fn load_catalog(global: &GlobalArgs, file: &Path) -> anyhow::Result<()> {
    let data_dir = resolve_data_dir(global.data.as_deref());
    let path = file
        .canonicalize()
        .with_context(|| format!("the catalog file {} cannot be read", file.display()))?;
    let message = control::request(&data_dir, Request::LoadCatalog { path })?.into_message()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{message}")?;
    Ok(())
}

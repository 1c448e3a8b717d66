//! lanspread: the executable. With no subcommand it opens the window; the
//! subcommands run the same code headless, for servers and scripts.
//!
//! Argument parsing lives here; each subcommand is a file under `cli/`, each
//! screen a file under `gui/`.
//!
//! On Windows the release build is a GUI program: double-clicked, it opens
//! no console window; started from a console, it attaches to it so the
//! subcommands print there.

#![cfg_attr(all(windows, not(debug_assertions)), windows_subsystem = "windows")]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lanspread_net::Request;

mod cli;
mod context;
mod demo;
mod gui;
mod platform;

/// Spread games across a LAN party: one library of every PC's games,
/// downloads from every PC that has the right version at once.
#[derive(Debug, Parser)]
#[command(name = "lanspread", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Open the window with mDNS discovery off (manual peers only),
    /// whatever the settings say.
    #[arg(long)]
    no_discovery: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Use this catalog instead of the embedded one (an organiser's newer catalog).
    #[arg(long, global = true, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// The data folder (settings, caches, journals). Default: beside the
    /// executable when a `portable` file is there, else the platform's data folder.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the catalog: every game lanspread knows and its right version.
    Catalog(cli::catalog::CatalogArgs),
    /// Show what a games folder holds, one row per folder.
    Library(cli::library::LibraryArgs),
    /// Share a games folder without a window, until Ctrl-C.
    Serve(cli::serve::ServeArgs),
    /// List the other lanspread PCs on the LAN.
    Peers(cli::lan::LanArgs),
    /// List the games on the LAN and how many PCs serve the right version.
    List(cli::lan::LanArgs),
    /// Ask the lanspread running on the data folder for its state.
    Status(cli::status::StatusArgs),
    /// Download (or resume) a game's catalog version from every peer that has it.
    Get(cli::ops::OpArgs),
    /// Unpack a downloaded game into its local/ folder.
    Install(cli::ops::OpArgs),
    /// Delete a game's local/ folder; the payload stays shared.
    Uninstall(cli::ops::OpArgs),
    /// Delete a game's payload (and local/ unless --keep-local).
    Remove(cli::ops::RemoveArgs),
    /// Bring a game to the catalog's version, reinstalling it if it was installed.
    Update(cli::ops::OpArgs),
    /// Start an installed game, as the catalog's launch entry says.
    Play(cli::play::PlayArgs),
    /// Open the window with three demo PCs in this process (loopback only),
    /// sharing generated games to try everything on.
    Demo(DemoArgs),
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Take screenshots of the main views into DIR, then close.
    #[arg(long, value_name = "DIR")]
    screenshots: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    platform::attach_parent_console();
    let cli = Cli::parse();
    let window = matches!(cli.command, None | Some(Command::Demo(_)));
    let outcome = match cli.command {
        None => gui::run(
            &cli.global,
            gui::WindowOptions {
                no_discovery: cli.no_discovery,
                ..Default::default()
            },
        ),
        Some(Command::Demo(args)) => gui::run(
            &cli.global,
            gui::WindowOptions {
                no_discovery: true,
                demo: true,
                screenshots: args.screenshots,
            },
        ),
        Some(Command::Catalog(args)) => cli::catalog::run(&cli.global, &args),
        Some(Command::Library(args)) => cli::library::run(&cli.global, &args),
        Some(Command::Serve(args)) => cli::serve::run(&cli.global, &args),
        Some(Command::Peers(args)) => cli::lan::run_peers(&cli.global, &args),
        Some(Command::List(args)) => cli::lan::run_list(&cli.global, &args),
        Some(Command::Status(args)) => cli::status::run(&cli.global, &args),
        Some(Command::Get(args)) => {
            cli::ops::run(&cli.global, &args, |game| Request::Download { game })
        }
        Some(Command::Install(args)) => {
            cli::ops::run(&cli.global, &args, |game| Request::Install { game })
        }
        Some(Command::Uninstall(args)) => {
            cli::ops::run(&cli.global, &args, |game| Request::Uninstall { game })
        }
        Some(Command::Remove(args)) => cli::ops::run_remove(&cli.global, &args),
        Some(Command::Update(args)) => {
            cli::ops::run(&cli.global, &args, |game| Request::Update { game })
        }
        Some(Command::Play(args)) => cli::play::run(&cli.global, &args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lanspread: {err:#}");
            if window {
                gui::show_start_error(&format!("{err:#}"));
            }
            if err.downcast_ref::<context::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

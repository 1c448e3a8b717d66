//! `lanspread play ID`: starts an installed game from its catalog `launch`
//! entry. When a lanspread runs on the data folder, it starts the game (and
//! watches it, for the sharing choice while a game runs); otherwise the game
//! is started from `--games DIR` directly and this command ends at once.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use lanspread_core::GameId;
use lanspread_core::store::resolve_data_dir;
use lanspread_net::Request;
use lanspread_net::control;

use crate::GlobalArgs;
use crate::context::catalog_for_cli;

#[derive(Debug, clap::Args)]
pub struct PlayArgs {
    /// The game id (see `lanspread catalog`).
    id: String,
    /// The games folder (needed when no lanspread runs on the data folder).
    #[arg(long, value_name = "DIR")]
    games: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: &PlayArgs) -> anyhow::Result<()> {
    let catalog = catalog_for_cli(global)?;
    let Some(entry) = catalog.get_str(&args.id) else {
        bail!(
            "{} is not in the catalog; `lanspread catalog` lists the games",
            args.id
        );
    };
    let data_dir = resolve_data_dir(global.data.as_deref());
    if control::is_running(&data_dir) {
        super::ops::check_same_games_dir(&data_dir, args.games.as_deref())?;
        let game = GameId::parse(&args.id)?;
        let said = control::request(&data_dir, Request::Play { game })?.into_message()?;
        return super::emit(&format!("{said}\n"));
    }
    let Some(games) = &args.games else {
        bail!(
            "no lanspread runs on the data folder {}; pass --games DIR to start the game on its own",
            data_dir.display()
        );
    };
    let child = lanspread_net::play::start_game(games, entry)
        .with_context(|| format!("starting {}", entry.title))?;
    super::emit(&format!(
        "{} started (process {})\n",
        entry.title,
        child.id()
    ))
}

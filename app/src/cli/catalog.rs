//! `lanspread catalog [--json]`: the catalog in force.

use serde::Serialize;

use crate::GlobalArgs;
use crate::context::{catalog_for_cli, human_size_mib};

#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    action: Option<CatalogAction>,
    /// Print a JSON array of games instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum CatalogAction {
    /// Hand the lanspread running on the data folder a newer catalog file;
    /// uploads of games that no longer match it stop at once.
    Load {
        /// The catalog file (RON, like assets/catalog.ron).
        file: std::path::PathBuf,
    },
}

/// One game, as `catalog --json` prints it. Field names are stable.
#[derive(Debug, Serialize)]
struct CatalogRow<'a> {
    id: &'a str,
    title: &'a str,
    version: &'a str,
    genre: &'a str,
    max_players: u32,
    approx_size_mib: u64,
    description: &'a str,
}

pub fn run(global: &GlobalArgs, args: &CatalogArgs) -> anyhow::Result<()> {
    if let Some(CatalogAction::Load { file }) = &args.action {
        return super::ops::load_catalog(global, file);
    }
    let catalog = catalog_for_cli(global)?;
    let rows: Vec<CatalogRow<'_>> = catalog
        .entries()
        .map(|e| CatalogRow {
            id: e.id.as_str(),
            title: &e.title,
            version: e.version.as_str(),
            genre: &e.genre,
            max_players: e.max_players,
            approx_size_mib: e.approx_size_mib,
            description: &e.description,
        })
        .collect();
    if args.json {
        return super::emit(&(serde_json::to_string_pretty(&rows)? + "\n"));
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_owned(),
                r.title.to_owned(),
                r.version.to_owned(),
                r.genre.to_owned(),
                r.max_players.to_string(),
                human_size_mib(r.approx_size_mib),
            ]
        })
        .collect();
    let mut out = super::format_table(
        &["ID", "TITLE", "VERSION", "GENRE", "PLAYERS", "SIZE"],
        &table,
    );
    out.push_str(&format!(
        "\n{} games, catalog {} (edition {})\n",
        catalog.len(),
        catalog.source(),
        catalog.edition()
    ));
    super::emit(&out)
}

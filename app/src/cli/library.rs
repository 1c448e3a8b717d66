//! `lanspread library --games DIR [--json]`: what a games folder holds.

use std::path::PathBuf;

use anyhow::Context as _;
use lanspread_core::library::{PayloadState, scan_library};
use serde::Serialize;

use crate::GlobalArgs;
use crate::context::catalog_for_cli;

#[derive(Debug, clap::Args)]
pub struct LibraryArgs {
    /// The games folder to scan.
    #[arg(long, value_name = "DIR")]
    games: PathBuf,
    /// Print a JSON array, one object per folder, instead of a table.
    #[arg(long)]
    json: bool,
}

/// One folder, as `library --json` prints it. Field names are stable.
#[derive(Debug, Serialize)]
struct LibraryRow {
    /// The folder name (the game id for catalog games).
    id: String,
    title: Option<String>,
    in_catalog: bool,
    /// `current`, `outdated`, `incomplete` or `none`.
    payload: PayloadState,
    local_version: Option<String>,
    catalog_version: Option<String>,
    installed: bool,
    shareable: bool,
    problem: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &LibraryArgs) -> anyhow::Result<()> {
    let catalog = catalog_for_cli(global)?;
    let scan = scan_library(&args.games, &catalog)
        .with_context(|| "pick an existing games folder with --games DIR")?;
    let rows: Vec<LibraryRow> = scan
        .games
        .iter()
        .map(|game| LibraryRow {
            id: game.folder.clone(),
            title: game
                .id
                .as_ref()
                .and_then(|id| catalog.get(id))
                .map(|entry| entry.title.clone()),
            in_catalog: game.in_catalog,
            payload: game.payload,
            local_version: game.local_version.as_ref().map(ToString::to_string),
            catalog_version: game.catalog_version.as_ref().map(ToString::to_string),
            installed: game.installed,
            shareable: game.shareable(),
            problem: game.problem.clone(),
        })
        .collect();
    if args.json {
        return super::emit(&(serde_json::to_string_pretty(&rows)? + "\n"));
    }
    let dash = || "-".to_owned();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let payload = serde_json::to_value(r.payload)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            vec![
                r.id.clone(),
                r.title
                    .clone()
                    .unwrap_or_else(|| "(not in catalog)".to_owned()),
                payload,
                r.local_version.clone().unwrap_or_else(dash),
                r.catalog_version.clone().unwrap_or_else(dash),
                if r.installed { "yes" } else { "no" }.to_owned(),
                if r.shareable { "yes" } else { "no" }.to_owned(),
                r.problem.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = super::format_table(
        &[
            "FOLDER",
            "TITLE",
            "PAYLOAD",
            "LOCAL",
            "CATALOG",
            "INSTALLED",
            "SHARED",
            "PROBLEM",
        ],
        &table,
    );
    out.push_str(&format!(
        "\n{} folders in {}\n",
        rows.len(),
        args.games.display()
    ));
    super::emit(&out)
}

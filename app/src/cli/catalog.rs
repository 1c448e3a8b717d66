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
    /// Pin the right copies: hash every game in DIR that is at the catalog's
    /// version and write the catalog (the one in force, `--catalog`) with the
    /// digests of their manifests. A downloader with the pinned catalog
    /// takes exactly those copies, whatever the other PCs offer.
    Pin {
        /// A games folder holding good copies (`<DIR>/<id>/version.ini`).
        #[arg(long, value_name = "DIR")]
        games: std::path::PathBuf,
        /// Write the pinned catalog here instead of to stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
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
    match &args.action {
        Some(CatalogAction::Load { file }) => return super::ops::load_catalog(global, file),
        Some(CatalogAction::Pin { games, out }) => return pin(global, games, out.as_deref()),
        None => {}
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

/// `catalog pin`: the catalog in force with the manifest digest of every
/// game in `games` that is at the catalog's version.
fn pin(
    global: &GlobalArgs,
    games: &std::path::Path,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use lanspread_core::library::read_version_ini;
    use lanspread_core::{layout, manifest};

    let catalog = catalog_for_cli(global)?;
    if !games.is_dir() {
        anyhow::bail!("the games folder {} does not exist", games.display());
    }
    // A scratch store for the hash cache: pinning writes no data folder.
    let scratch = tempfile::tempdir().context("a scratch folder")?;
    let store = lanspread_core::Store::open(scratch.path())?;
    let mut pins = std::collections::BTreeMap::new();
    for entry in catalog.entries() {
        let dir = layout::game_dir(games, &entry.id);
        if !dir.is_dir() {
            continue;
        }
        match read_version_ini(&dir.join(lanspread_core::version::VERSION_INI)) {
            Ok(Some(version)) if version == entry.version => {}
            Ok(Some(version)) => {
                eprintln!(
                    "{}: version {version} here, the catalog's is {}: not pinned",
                    entry.id, entry.version
                );
                continue;
            }
            Ok(None) | Err(_) => {
                eprintln!("{}: no readable version.ini: not pinned", entry.id);
                continue;
            }
        }
        let built = manifest::build_manifest(&dir, &entry.id, &entry.version, &store)
            .with_context(|| format!("hashing {}", dir.display()))?;
        let digest = built.manifest.digest();
        eprintln!("{} {}: pinned {digest}", entry.id, entry.version);
        pins.insert(entry.id.clone(), digest);
    }
    if pins.is_empty() {
        anyhow::bail!(
            "no game in {} is at the catalog's version; nothing to pin",
            games.display()
        );
    }
    let text = catalog.to_ron_with_pins(&pins)? + "\n";
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => super::emit(&text)?,
    }
    Ok(())
}

//! What every entry point needs first: logging, the data folder, the
//! settings and the catalog in force.

use std::path::PathBuf;

use lanspread_core::{GameCatalog, Settings, Store};

use crate::GlobalArgs;

/// Logs to stderr; `RUST_LOG` overrides the default level.
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // A second init (tests) is harmless; the first subscriber stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// The catalog in force and, when an organiser's catalog could not be used,
/// the sentence that says so.
#[derive(Debug)]
pub struct LoadedCatalog {
    pub catalog: GameCatalog,
    pub warning: Option<String>,
}

/// The catalog file to use: `--catalog`, else the one saved in settings.
pub fn catalog_override(global: &GlobalArgs, settings: Option<&Settings>) -> Option<PathBuf> {
    global
        .catalog
        .clone()
        .or_else(|| settings.and_then(|s| s.catalog_file.clone()))
}

pub fn load_catalog(path: Option<PathBuf>) -> LoadedCatalog {
    let (catalog, error) = GameCatalog::load_or_embedded(path.as_deref());
    let warning = error.map(|err| format!("{err}; using the embedded catalog instead"));
    LoadedCatalog { catalog, warning }
}

/// The settings saved in the data folder, when a store exists there. A
/// headless command that only reads never creates a data folder.
pub fn saved_settings(global: &GlobalArgs) -> Option<Settings> {
    let data_dir = lanspread_core::store::resolve_data_dir(global.data.as_deref());
    if !data_dir.join("store").is_dir() {
        return None;
    }
    match Store::open(&data_dir).and_then(|store| store.settings()) {
        Ok(settings) => Some(settings),
        Err(err) => {
            tracing::warn!("ignoring saved settings: {err}");
            None
        }
    }
}

/// A mistake in what was typed: the command exits with code 2, as for a
/// bad argument, and does nothing.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The catalog for a headless command. A `--catalog FILE` given on the
/// command line must load: a typo would otherwise serve the embedded
/// catalog's versions to the whole party. Only the catalog saved in the
/// settings falls back to the embedded one, with a warning on stderr.
pub fn catalog_for_cli(global: &GlobalArgs) -> anyhow::Result<GameCatalog> {
    if let Some(path) = &global.catalog {
        return GameCatalog::from_file(path).map_err(|err| {
            anyhow::Error::new(UsageError(format!(
                "{err}; fix the file or leave out --catalog to use the embedded catalog"
            )))
        });
    }
    let settings = saved_settings(global);
    let loaded = load_catalog(catalog_override(global, settings.as_ref()));
    if let Some(warning) = &loaded.warning {
        eprintln!("lanspread: warning: {warning}");
    }
    Ok(loaded.catalog)
}

/// Sizes for people: `5.5 GiB`, `640 MiB`.
pub fn human_size_mib(mib: u64) -> String {
    if mib >= 1024 {
        format!("{:.1} GiB", mib as f64 / 1024.0)
    } else {
        format!("{mib} MiB")
    }
}

/// Times for people: `45 s`, `4 min 10 s`, `1 h 5 min`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => match secs % 60 {
            0 => format!("{} min", secs / 60),
            s => format!("{} min {s} s", secs / 60),
        },
        _ => match secs / 60 % 60 {
            0 => format!("{} h", secs / 3600),
            m => format!("{} h {m} min", secs / 3600),
        },
    }
}

/// Byte counts for people: `512 B`, `1.5 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(60), "1 min");
        assert_eq!(human_duration(250), "4 min 10 s");
        assert_eq!(human_duration(3600), "1 h");
        assert_eq!(human_duration(3900), "1 h 5 min");
    }
}

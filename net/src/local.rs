//! Local commands of the peer runtime: downloads, install, uninstall,
//! remove, update and catalog loads, each run as its own task with the
//! runtime's shared parts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lanspread_core::{GameCatalog, GameId, OutboundTransfers, Store};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::download::{DownloadJob, DownloadProgress, DownloadReport, run_download};
use crate::runtime::{Command, Event, PeerState};
use crate::serve::CatalogCell;

/// What local commands (downloads and operations) work with.
pub(crate) struct LocalContext {
    pub(crate) games_dir: Option<PathBuf>,
    pub(crate) store: Option<Store>,
    pub(crate) catalog: CatalogCell,
    pub(crate) transfers: OutboundTransfers,
    pub(crate) state: watch::Sender<PeerState>,
    pub(crate) rescan: mpsc::Sender<()>,
    /// Games being downloaded, served in part.
    pub(crate) partials: crate::swarm::PartialShares,
    /// Running downloads; the mutex guards only inserts and removals.
    pub(crate) downloads: std::sync::Mutex<BTreeMap<GameId, CancellationToken>>,
    /// The connections of the peers in the table.
    pub(crate) connections: crate::discovery::Connections,
    /// Games started from here (Play) and still running.
    pub(crate) running: std::sync::Arc<crate::play::Running>,
    pub(crate) shutdown: CancellationToken,
}

/// Removes a download from the running set when it ends, however it ends.
struct DownloadSlot<'a> {
    local: &'a LocalContext,
    game: GameId,
}

impl Drop for DownloadSlot<'_> {
    fn drop(&mut self) {
        let mut downloads = self
            .local
            .downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        downloads.remove(&self.game);
    }
}

#[derive(Debug, Clone, Copy)]
enum LocalOp {
    Install,
    Uninstall,
    Remove { keep_local: bool },
}

impl LocalContext {
    fn folders(&self) -> Result<(PathBuf, Store), String> {
        match (&self.games_dir, &self.store) {
            (Some(games_dir), Some(store)) => Ok((games_dir.clone(), store.clone())),
            _ => Err("this lanspread has no games folder; start it with --games DIR".to_owned()),
        }
    }

    pub(crate) fn cancel_download(&self, game: &GameId) {
        let downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = downloads.get(game) {
            token.cancel();
        }
    }

    pub(crate) async fn run(&self, command: Command, events: &broadcast::Sender<Event>) {
        match command {
            Command::Download { game, reply } => {
                let _ = reply.send(self.download(&game, events).await);
            }
            Command::Update { game, reply } => {
                let _ = reply.send(self.update(&game, events).await);
            }
            Command::PlanUpdate { game, reply } => {
                let _ = reply.send(self.plan_update(&game).await);
            }
            Command::Install { game, reply } => {
                let _ = reply.send(self.operate(&game, LocalOp::Install).await);
            }
            Command::Uninstall { game, reply } => {
                let _ = reply.send(self.operate(&game, LocalOp::Uninstall).await);
            }
            Command::Remove {
                game,
                keep_local,
                reply,
            } => {
                let _ = reply.send(self.operate(&game, LocalOp::Remove { keep_local }).await);
            }
            Command::LoadCatalog { path, reply } => {
                let _ = reply.send(self.load_catalog(&path));
            }
            Command::Play { game, reply } => {
                let _ = reply.send(self.play(&game));
            }
            Command::AddPeer { .. }
            | Command::Rescan
            | Command::CancelDownload { .. }
            | Command::SetSharing { .. } => {}
        }
    }

    /// Starts an installed game (see [`crate::play`]).
    fn play(&self, game: &GameId) -> Result<String, String> {
        let (games_dir, _) = self.folders()?;
        let catalog = self.catalog.get();
        let entry = catalog
            .get(game)
            .ok_or_else(|| format!("{game} is not in the catalog"))?;
        let pid = self
            .running
            .start(&games_dir, entry)
            .map_err(|e| e.to_string())?;
        // Seen as running from now, not from the next check.
        let running = self.running.sweep();
        self.state.send_modify(|s| s.running = running);
        Ok(format!("{} started (process {pid})", entry.title))
    }

    /// Downloads the catalog's version unless it is already here.
    async fn download(
        &self,
        game: &GameId,
        events: &broadcast::Sender<Event>,
    ) -> Result<DownloadReport, String> {
        let (games_dir, store) = self.folders()?;
        let catalog = self.catalog.get();
        let Some(expected) = catalog.expected_version(game).cloned() else {
            return Err(format!("{game} is not in the catalog"));
        };
        let here = lanspread_core::library::scan_game(&games_dir, game, &catalog);
        if here.payload == lanspread_core::PayloadState::Current {
            return Ok(DownloadReport {
                id: game.to_string(),
                version: expected.to_string(),
                bytes: 0,
                seconds: 0.0,
                fetch_seconds: 0.0,
                start_seconds: 0.0,
                started_at_unix_ms: 0,
                peers: Vec::new(),
                reused_bytes: 0,
                pieces_reused: 0,
                pieces_fetched: 0,
                pieces_journaled: 0,
                pieces_rescued: 0,
                total_pieces: 0,
            });
        }
        let cancel = self.shutdown.child_token();
        {
            let mut downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
            if downloads.contains_key(game) {
                return Err(format!("{game} is already downloading"));
            }
            downloads.insert(game.clone(), cancel.clone());
        }
        let _slot = DownloadSlot {
            local: self,
            game: game.clone(),
        };
        let progress_state = self.state.clone();
        let progress_events = events.clone();
        let job = DownloadJob {
            game: game.clone(),
            games_dir,
            store,
            catalog,
            transfers: self.transfers.clone(),
            peers: self.state.subscribe(),
            connections: self.connections.clone(),
            partials: self.partials.clone(),
            cancel,
            on_progress: Box::new(move |progress: &DownloadProgress| {
                progress_state.send_modify(|s| {
                    s.downloads.insert(progress.game.clone(), progress.clone());
                });
                let _ = progress_events.send(Event::Download(progress.clone()));
            }),
        };
        let span = tracing::info_span!("download", game = %game);
        let result = tracing::Instrument::instrument(run_download(job), span).await;
        let _ = self.rescan.try_send(());
        match result {
            Ok(report) => {
                tracing::info!(
                    bytes = report.bytes,
                    seconds = report.seconds,
                    "download of {game} complete"
                );
                Ok(report)
            }
            Err(err) => Err(err.to_string()),
        }
    }

    /// What updating `game` would download and reuse, kept in the state.
    async fn plan_update(&self, game: &GameId) -> Result<crate::download::UpdatePlan, String> {
        let (games_dir, store) = self.folders()?;
        let catalog = self.catalog.get();
        let version = catalog
            .expected_version(game)
            .map(ToString::to_string)
            .ok_or_else(|| format!("{game} is not in the catalog"))?;
        let peers = self.state.borrow().clone();
        let plan = crate::download::plan_update(
            game,
            &games_dir,
            &store,
            &catalog,
            &peers,
            &self.connections,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.state.send_modify(|s| {
            s.update_plans.insert(game.to_string(), (version, plan));
        });
        Ok(plan)
    }

    async fn update(
        &self,
        game: &GameId,
        events: &broadcast::Sender<Event>,
    ) -> Result<String, String> {
        let (games_dir, _) = self.folders()?;
        let catalog = self.catalog.get();
        let here = lanspread_core::library::scan_game(&games_dir, game, &catalog);
        if here.payload == lanspread_core::PayloadState::Current {
            return Ok(format!("{game} is already at the catalog's version"));
        }
        let was_installed = here.installed;
        let report = self.download(game, events).await?;
        let mut message = format!(
            "{game} updated to {} ({} bytes fetched)",
            report.version, report.bytes
        );
        if was_installed {
            self.operate(game, LocalOp::Install).await?;
            message.push_str("; reinstalled");
        }
        Ok(message)
    }

    async fn operate(&self, game: &GameId, op: LocalOp) -> Result<String, String> {
        let (games_dir, store) = self.folders()?;
        // Install and uninstall touch `local/` only, which is never served:
        // uploads go on and the game stays shared. Remove rewrites the
        // payload: every upload ends first.
        let guard = match op {
            LocalOp::Install | LocalOp::Uninstall => self.transfers.begin_local_operation(game),
            LocalOp::Remove { .. } => self.transfers.begin_operation(game).await,
        }
        .map_err(|e| e.to_string())?;
        let id = game.clone();
        let result = tokio::task::spawn_blocking(move || {
            use lanspread_core::ops;
            match op {
                LocalOp::Install => ops::install(&games_dir, &id, &store, &guard)
                    .map(|bytes| format!("{id} installed ({bytes} bytes unpacked)")),
                LocalOp::Uninstall => ops::uninstall(&games_dir, &id, &store, &guard)
                    .map(|()| format!("{id} uninstalled")),
                LocalOp::Remove { keep_local } => {
                    ops::remove(&games_dir, &id, keep_local, &store, &guard)
                        .map(|()| format!("{id} removed"))
                }
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        let _ = self.rescan.try_send(());
        result.map_err(|e| e.to_string())
    }

    /// Swaps the catalog, and stops uploads of every game whose payload no
    /// longer matches it, at once.
    fn load_catalog(&self, path: &Path) -> Result<String, String> {
        let catalog = GameCatalog::from_file(path).map_err(|e| e.to_string())?;
        let count = catalog.len();
        let edition = catalog.edition().to_owned();
        self.catalog.set(catalog);
        let current = self.catalog.get();
        let mut stopped = 0;
        if let Some(games_dir) = &self.games_dir {
            for game in self.transfers.snapshot().outbound.keys() {
                if lanspread_core::library::check_shareable(games_dir, &current, game).is_err() {
                    stopped += self.transfers.cancel_transfers(game);
                }
            }
        }
        let _ = self.rescan.try_send(());
        Ok(format!(
            "catalog {} loaded ({count} games, edition {edition}); {stopped} uploads of games no longer matching it were stopped",
            path.display()
        ))
    }
}

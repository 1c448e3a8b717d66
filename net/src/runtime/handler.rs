//! The one place requests are answered: every [`Request`], from the
//! window, the control socket or a test, is turned into its [`Reply`] or a
//! typed [`ApiError`] here. Instant requests are answered on the runtime's
//! command loop; downloads and operations run as their own jobs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lanspread_core::{GameCatalog, GameId, OutboundTransfers, SharingPolicy, Store};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{Event, PeerState};
use crate::api::{ApiError, Reply, Request, StatusReport};
use crate::discovery::PeerDirectory;
use crate::download::{DownloadError, DownloadJob, DownloadProgress, DownloadReport, run_download};
use crate::serve::CatalogCell;

/// A request and where its answer goes (nowhere, when nobody waits).
pub(crate) struct Envelope {
    pub(crate) request: Request,
    pub(crate) reply: Option<oneshot::Sender<Result<Reply, ApiError>>>,
}

/// What answering requests works with: the runtime's shared parts.
pub(crate) struct Handler {
    pub(crate) games_dir: Option<PathBuf>,
    pub(crate) store: Option<Store>,
    pub(crate) catalog: CatalogCell,
    pub(crate) transfers: OutboundTransfers,
    pub(crate) state: watch::Sender<PeerState>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) rescan: mpsc::Sender<()>,
    /// Games being downloaded, served in part.
    pub(crate) partials: crate::swarm::PartialShares,
    /// Running downloads; the mutex guards only inserts and removals.
    pub(crate) downloads: std::sync::Mutex<BTreeMap<GameId, CancellationToken>>,
    /// The peer table, for typed-in addresses.
    pub(crate) directory: PeerDirectory,
    /// The connections of the peers in the table.
    pub(crate) connections: crate::discovery::Connections,
    /// Games started from here (Play) and still running.
    pub(crate) running: std::sync::Arc<crate::play::Running>,
    /// The sharing policy in force (see `sharing`).
    pub(crate) policy: watch::Sender<SharingPolicy>,
    pub(crate) shutdown: CancellationToken,
}

/// Removes a download from the running set when it ends, however it ends.
struct DownloadSlot<'a> {
    handler: &'a Handler,
    game: GameId,
}

impl Drop for DownloadSlot<'_> {
    fn drop(&mut self) {
        let mut downloads = self
            .handler
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

impl Handler {
    fn folders(&self) -> Result<(PathBuf, Store), ApiError> {
        match (&self.games_dir, &self.store) {
            (Some(games_dir), Some(store)) => Ok((games_dir.clone(), store.clone())),
            _ => Err(ApiError::NoGamesFolder),
        }
    }

    fn cancel_download(&self, game: &GameId) {
        let downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = downloads.get(game) {
            token.cancel();
        }
    }

    /// Answers one request and hands the answer to whoever waits for it.
    pub(crate) async fn answer(&self, envelope: Envelope) {
        let answer = self.handle(envelope.request).await;
        if let Some(reply) = envelope.reply {
            let _ = reply.send(answer);
        }
    }

    /// Every request, answered.
    async fn handle(&self, request: Request) -> Result<Reply, ApiError> {
        match request {
            Request::Status => Ok(Reply::Status(Box::new(StatusReport::from_state(
                &self.state.borrow(),
            )))),
            Request::AddPeer { target } => match self.directory.add_manual(&target).await {
                Ok(addr) => Ok(Reply::PeerAdded { addr }),
                Err(reason) => Err(ApiError::Peer { target, reason }),
            },
            Request::Rescan => {
                let _ = self.rescan.try_send(());
                Ok(Reply::Done)
            }
            Request::CancelDownload { game } => {
                self.cancel_download(&game);
                Ok(Reply::Done)
            }
            Request::SetSharing { policy } => {
                self.policy.send_replace(policy);
                Ok(Reply::Done)
            }
            Request::Download { game } => self.download(&game).await.map(Reply::Downloaded),
            Request::PlanUpdate { game } => self.plan_update(&game).await.map(Reply::UpdatePlan),
            Request::Update { game } => self.update(&game).await.map(message),
            Request::Install { game } => self.operate(&game, LocalOp::Install).await.map(message),
            Request::Uninstall { game } => {
                self.operate(&game, LocalOp::Uninstall).await.map(message)
            }
            Request::Remove { game, keep_local } => self
                .operate(&game, LocalOp::Remove { keep_local })
                .await
                .map(message),
            Request::LoadCatalog { path } => self.load_catalog(&path).map(message),
            Request::Play { game } => self.play(&game).map(message),
        }
    }

    /// Starts an installed game (see [`crate::play`]).
    fn play(&self, game: &GameId) -> Result<String, ApiError> {
        let (games_dir, _) = self.folders()?;
        let catalog = self.catalog.get();
        let entry = catalog.get(game).ok_or_else(|| not_in_catalog(game))?;
        let pid = self
            .running
            .start(&games_dir, entry)
            .map_err(|e| ApiError::Play {
                game: game.to_string(),
                reason: e.to_string(),
            })?;
        // Seen as running from now, not from the next check.
        let running = self.running.sweep();
        self.state.send_modify(|s| s.running = running);
        Ok(format!("{} started (process {pid})", entry.title))
    }

    /// Downloads the catalog's version unless it is already here.
    async fn download(&self, game: &GameId) -> Result<DownloadReport, ApiError> {
        let (games_dir, store) = self.folders()?;
        let catalog = self.catalog.get();
        let Some(expected) = catalog.expected_version(game).cloned() else {
            return Err(not_in_catalog(game));
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
                return Err(ApiError::AlreadyDownloading {
                    game: game.to_string(),
                });
            }
            downloads.insert(game.clone(), cancel.clone());
        }
        let _slot = DownloadSlot {
            handler: self,
            game: game.clone(),
        };
        let progress_state = self.state.clone();
        let progress_events = self.events.clone();
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
            Err(err) => Err(download_error(game, err)),
        }
    }

    /// What updating `game` would download and reuse, kept in the state.
    async fn plan_update(&self, game: &GameId) -> Result<crate::download::UpdatePlan, ApiError> {
        let (games_dir, store) = self.folders()?;
        let catalog = self.catalog.get();
        let version = catalog
            .expected_version(game)
            .map(ToString::to_string)
            .ok_or_else(|| not_in_catalog(game))?;
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
        .map_err(|e| download_error(game, e))?;
        self.state.send_modify(|s| {
            s.update_plans.insert(game.to_string(), (version, plan));
        });
        Ok(plan)
    }

    async fn update(&self, game: &GameId) -> Result<String, ApiError> {
        let (games_dir, _) = self.folders()?;
        let catalog = self.catalog.get();
        let here = lanspread_core::library::scan_game(&games_dir, game, &catalog);
        if here.payload == lanspread_core::PayloadState::Current {
            return Ok(format!("{game} is already at the catalog's version"));
        }
        let was_installed = here.installed;
        let report = self.download(game).await?;
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

    async fn operate(&self, game: &GameId, op: LocalOp) -> Result<String, ApiError> {
        let (games_dir, store) = self.folders()?;
        // Install and uninstall touch `local/` only, which is never served:
        // uploads go on and the game stays shared. Remove rewrites the
        // payload: every upload ends first.
        let guard = match op {
            LocalOp::Install | LocalOp::Uninstall => self.transfers.begin_local_operation(game),
            LocalOp::Remove { .. } => self.transfers.begin_operation(game).await,
        }
        .map_err(|e| ApiError::Busy {
            game: game.to_string(),
            reason: e.to_string(),
        })?;
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
        .map_err(|e| ApiError::Internal {
            reason: e.to_string(),
        })?;
        let _ = self.rescan.try_send(());
        result.map_err(|e| ApiError::Operation {
            game: game.to_string(),
            reason: e.to_string(),
        })
    }

    /// Swaps the catalog, and stops uploads of every game whose payload no
    /// longer matches it, at once.
    fn load_catalog(&self, path: &Path) -> Result<String, ApiError> {
        let catalog = GameCatalog::from_file(path).map_err(|e| ApiError::Catalog {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
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

fn message(message: String) -> Reply {
    Reply::Message { message }
}

fn not_in_catalog(game: &GameId) -> ApiError {
    ApiError::NotInCatalog {
        game: game.to_string(),
    }
}

/// A download's failure, typed for the other side.
fn download_error(game: &GameId, err: DownloadError) -> ApiError {
    let game = game.to_string();
    match err {
        DownloadError::Cancelled => ApiError::Cancelled { game },
        DownloadError::UnknownGame(_) => ApiError::NotInCatalog { game },
        DownloadError::Busy(err) => ApiError::Busy {
            game,
            reason: err.to_string(),
        },
        other => ApiError::Download {
            game,
            reason: other.to_string(),
        },
    }
}

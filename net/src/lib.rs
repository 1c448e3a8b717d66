//! lanspread-net: the peer. QUIC serving, discovery, the peer table and the
//! peer runtime that the window and the command line both drive.
//!
//! This crate acts on the decisions `lanspread-core` makes (which games are
//! shareable, which paths are safe, who may touch a game right now); it never
//! draws anything and never depends on a GUI crate. Arrows point
//! app -> net -> core.
//!
//! - [`endpoint`]: quinn configuration, the per-install certificate, limits.
//! - [`proto`]: messages, framing, size limits, error codes.
//! - [`serve`]: answering requests; chunks stream under a transfer guard.
//! - [`buffers`]: chunk bytes in 256 KiB blocks from a bounded pool, on
//!   both sides of a transfer.
//! - [`client`]: asking a peer for hello, library, manifest and chunks.
//! - [`discovery`]: mDNS and manual peers, and the peer table.
//! - [`download`]: aggregated, verified, resumable downloads, driving the
//!   core's download state machine.
//! - [`swarm`]: serving what a running download has verified, and the
//!   seeder's memory of what it just sent.
//! - [`api`]: the one request/reply vocabulary (window, CLI, tests).
//! - [`runtime`]: the background runtime: requests in, state and events
//!   out; every request is answered in `runtime::handler`.
//! - [`control`]: the local control socket, carrying [`api`] requests for
//!   the command line.

pub mod adapters;
pub mod api;
pub mod buffers;
pub mod client;
pub mod control;
pub mod data_lock;
pub mod discovery;
pub mod download;
pub mod endpoint;
pub mod library;
pub mod open_files;
mod platform;
pub mod play;
pub mod proto;
pub mod rate;
pub mod runtime;
pub mod serve;
pub mod swarm;

pub use api::{ApiError, Reply, Request};
pub use lanspread_core as core;
pub use runtime::{Answer, Event, PeerConfig, PeerHandle, PeerState};

//! lanspread-core: the domain of a LAN party's game library, with no sockets
//! and no GUI.
//!
//! This crate decides; it does not talk. It knows which games exist and which
//! version of each is the right one ([`catalog`]), what the games folder holds
//! ([`library`], laid out as [`layout`] says), what the files of a game
//! version are ([`manifest`], built from disk by [`hashing`]), which paths
//! are safe ([`paths`]), what is remembered across runs ([`store`]), who
//! may touch a game right now ([`transfers`]), which peers agree on a
//! version ([`vote`]), which chunk to fetch from whom and when a peer is
//! stalled ([`download`], one I/O-free state machine), and how installs,
//! removals and updates change the disk safely ([`ops`], [`archive`]). The
//! network (`lanspread-net`) and the window (`lanspread`) act on these
//! decisions.
//!
//! Never add a dependency on a socket, an async network stack or a GUI here.
//! tokio is used only for its synchronisation primitives.

pub mod archive;
pub mod catalog;
pub mod cdc;
pub mod download;
pub mod fsops;
pub mod hashing;
pub mod launch;
pub mod layout;
pub mod library;
pub mod manifest;
pub mod ops;
pub mod paths;
mod platform;
pub mod sharing;
pub mod store;
pub mod transfers;
pub mod version;
pub mod volume;
pub mod vote;

pub use catalog::{CatalogEntry, CatalogError, GameCatalog, GameId};
pub use library::{GameState, LibraryScan, LocalGame, PayloadState, SharedGame};
pub use manifest::{Blake3Hash, Manifest};
pub use paths::{PathError, RelPath, validate_relative_path};
pub use sharing::{SharingInForce, SharingPolicy, WhilePlaying};
pub use store::{Settings, Store};
pub use transfers::{OperationGuard, OutboundTransfers, TransferGuard, TransfersSnapshot};
pub use version::GameVersion;

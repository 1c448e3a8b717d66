//! lanspread-net: the peer. QUIC serving, discovery, aggregated downloads and
//! the peer runtime that the window and the command line both drive.
//!
//! This crate acts on the decisions `lanspread-core` makes; it never draws
//! anything and never depends on a GUI crate. (It is filled in by the peer
//! issue; for now it re-exports the core so the dependency arrows are in
//! place: app -> net -> core.)

pub use lanspread_core as core;

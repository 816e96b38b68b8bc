//! Fuzz targets for clusterchat, as a library so that the targets stay one line each and the harnesses
//! can be run on the seed corpus by `cargo test` in this directory (no fuzzing engine needed).
//!
//! # Layout
//! - [`frame`]: the `frame_decoder` target: arbitrary bytes, whole and in pieces, into the frame codec.
//! - [`dispatch`]: the `dispatch` target: three connections' bytes through the codec into the service,
//!   on the real SQLite store, checked against a model of the protocol.
//! - [`websocket`]: the `websocket_decoder` target: bytes, whole and in pieces, into the WebSocket codec.
//! - [`db`]: the dispatch target's database (a file in a directory of the process, emptied per input).
//!
//! `fuzz_targets/` holds the targets, `seeds/` the committed seed corpus of each. How to run them:
//! `make fuzz` at the top of the repository; docs/RELIABILITY.md has the details.

pub mod db;
pub mod dispatch;
pub mod frame;
pub mod websocket;

#[cfg(test)]
mod seeds;

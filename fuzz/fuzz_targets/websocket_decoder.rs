//! Bytes into the WebSocket codec, whole and in pieces; see `clusterchat_fuzz::websocket`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| clusterchat_fuzz::websocket::run(data));

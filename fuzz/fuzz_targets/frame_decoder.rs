//! Arbitrary bytes into the frame codec, whole and in pieces; see `clusterchat_fuzz::frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| clusterchat_fuzz::frame::run(data));

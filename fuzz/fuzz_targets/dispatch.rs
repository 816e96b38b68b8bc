//! Three connections' bytes through the codec into the service; see `clusterchat_fuzz::dispatch`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    clusterchat_fuzz::dispatch::run(data);
});

//! libFuzzer entry point for `mp_fuzz::targets::queue_shared_state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_fuzz::targets::queue_shared_state(data));

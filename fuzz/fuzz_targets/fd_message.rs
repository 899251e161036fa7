//! libFuzzer entry point for `mp_fuzz::targets::fd_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_fuzz::targets::fd_message(data));

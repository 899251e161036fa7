//! libFuzzer entry point for `mp_fuzz::targets::pool_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_fuzz::targets::pool_wire(data));

//! libFuzzer entry point for `mp_fuzz::targets::auth_digest_prefix`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mp_fuzz::targets::auth_digest_prefix(data));

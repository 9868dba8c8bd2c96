#![no_main]
//! libFuzzer target: see `sluice_fuzz::jwt`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::jwt(data));

#![no_main]
//! libFuzzer target: see `sluice_fuzz::manifest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::manifest(data));

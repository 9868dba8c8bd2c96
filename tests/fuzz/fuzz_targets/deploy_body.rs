#![no_main]
//! libFuzzer target: see `sluice_fuzz::deploy_body`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::deploy_body(data));

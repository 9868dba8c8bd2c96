#![no_main]
//! libFuzzer target: see `sluice_fuzz::json_body`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::json_body(data));

#![no_main]
//! libFuzzer target: see `sluice_fuzz::guest_response`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::guest_response(data));

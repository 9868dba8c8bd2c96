#![no_main]
//! libFuzzer target: see `sluice_fuzz::range`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::range(data));

//! libFuzzer target: see `mnc_fuzz::harness::npy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mnc_fuzz::harness::npy(data));

//! libFuzzer target: see `mnc_fuzz::harness::onnx_compile`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mnc_fuzz::harness::onnx_compile(data));

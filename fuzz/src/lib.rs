//! The fuzz targets' shared code: [`harness`] (what each target does with one input; also
//! compiled into the regression test `tests/tests/fuzz_regressions.rs`, which replays the
//! committed corpora and crash inputs) and [`seeds`] (the seed corpora, generated at run time
//! by the `make_seeds` binary).

pub mod harness;
pub mod seeds;

//! `mnc-runtime`: executes models. Holds the reference executor (the oracle for every pass
//! and backend) and the runtime's error type.

// Unsafe discipline: every unsafe operation, also inside an `unsafe fn`, sits in an `unsafe`
// block with a `// SAFETY:` comment stating why its invariant holds (the clippy lint is
// checked by `cargo clippy -p mnc-targets -p mnc-runtime --all-targets`).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cpu;
pub mod cuda;
pub mod error;
pub mod guard;
pub mod reference;
pub mod threads;

pub use error::RuntimeError;
pub use reference::ReferenceExecutor;

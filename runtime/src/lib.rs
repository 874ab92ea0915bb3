//! `mnc-runtime`: executes models. Holds the reference executor (the oracle for every pass
//! and backend) and the runtime's error type.

pub mod cpu;
pub mod cuda;
pub mod error;
pub mod guard;
pub mod reference;

pub use error::RuntimeError;
pub use reference::ReferenceExecutor;

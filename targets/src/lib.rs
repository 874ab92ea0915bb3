//! Code generation targets.

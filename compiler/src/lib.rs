//! mnc library.

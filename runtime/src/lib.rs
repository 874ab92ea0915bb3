//! `mnc-runtime`: executes models. Holds the reference executor (the oracle for every pass
//! and backend).

pub mod reference;

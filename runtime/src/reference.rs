//! Reference executor (being written).

//! Cost report (being written).

//! Model zoo (being written).

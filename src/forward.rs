//! forward (in progress)

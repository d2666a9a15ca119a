//! The watchdog. (Being written.)

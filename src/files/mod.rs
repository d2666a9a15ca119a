//! The file API (in progress).

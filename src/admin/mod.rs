//! The admin API: trust relationships, callers, the decision log and policy
//! status, served on the same listeners behind the same pipeline.

pub mod cli;

//! Decode JSON the way Go's `encoding/json` decodes it into the daemon's types.
//!
//! (Skeleton: the inspect helper fills this in.)

//! Trust data: who may do what to which container, and the callers' credentials.
//!
//! (Skeleton: the policy helper fills in the model and the sled store.)

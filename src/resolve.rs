//! Resolve: which concrete object a resource reference names.
//!
//! (Filled in by the pipeline work: container cache fed by the events stream.)

use std::collections::BTreeMap;

use serde::Serialize;

use crate::classify::ResourceKind;

/// The object a request acts on, as the policy sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The reference as the client wrote it (`web-1`, `3f2a…`, `/web-1`).
    pub reference: Option<String>,
    /// The canonical id, when the object exists.
    pub id: Option<String>,
    /// The canonical name without a leading `/`.
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// For containers: the image it was created from.
    pub image: Option<String>,
    /// Whether the reference resolved to an existing object.
    pub exists: bool,
    #[serde(skip)]
    pub kind: Option<ResourceKind>,
}

//! Request-target handling the way the daemon's router sees it: version
//! prefix, percent-decoding, `path.Clean`, and Go's form semantics.

use std::fmt;

/// An API version as the daemon parses it: each part an integer (`1.044` = 1.44).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Parse `1.44` (parts parsed as integers, as the daemon does).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('.')?;
        Some(Self::new(a.parse().ok()?, b.parse().ok()?))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The versions the daemon accepts; learnt from the upstream's `/version` at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub min: ApiVersion,
    pub max: ApiVersion,
}

impl Default for VersionRange {
    fn default() -> Self {
        Self {
            min: ApiVersion::new(1, 24),
            max: ApiVersion::new(1, 56),
        }
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}–{}", self.min, self.max)
    }
}

/// Go's `r.Form.Get`: the first value for `key`. Body values are placed before
/// query values when a form body is merged, so the body wins as in `ParseForm`.
pub fn form_get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

//! Request-target handling the way the daemon's router sees it: version
//! prefix, percent-decoding, `path.Clean`, and Go's form semantics.
//!
//! Why by hand: every authorization bypass of the past came from the checker
//! reading other bytes than the daemon. Generic URL crates are lenient where Go
//! is strict (a bad `%zz` is kept as is instead of being an error) and know
//! nothing of gorilla/mux's clean-path redirect or of `url.ParseQuery`'s
//! semicolon rule, so each of those rules is written here once, after Go's
//! `net/url` and `path` packages, and everything else is refused.

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

    /// Parse `1.44` (parts parsed as integers, as the daemon does). Only ASCII
    /// digits are accepted in each part (Rust's integer parser would also take a
    /// leading `+`, which the daemon's `[0-9.]+` route variable never matches).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('.')?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return None;
        }
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

impl VersionRange {
    /// Whether the daemon would serve a request carrying version `v`.
    pub fn contains(&self, v: ApiVersion) -> bool {
        self.min <= v && v <= self.max
    }
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

/// Like [`form_get`], but an empty value counts as absent, as it does for the
/// daemon's `if v := r.Form.Get(k); v != ""` checks.
pub fn form_get_nonempty<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form_get(form, key).filter(|v| !v.is_empty())
}

/// The daemon's `httputils.BoolValue`: false only for "", 0, no, false and
/// none (trimmed, any case), so `link=off` counts as true.
pub fn form_bool(form: &[(String, String)], key: &str) -> bool {
    let value = form_get(form, key).unwrap_or("").trim().to_lowercase();
    !matches!(value.as_str(), "" | "0" | "no" | "false" | "none")
}

/// Why a piece of the request target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Not something Go's HTTP server or `url.ParseQuery` accepts.
    Malformed(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Malformed(m) => f.write_str(m),
        }
    }
}

/// Go's `net/url` `unescape`: `%XX` must be two hex digits; in query mode `+`
/// is a space. The decoded bytes must be UTF-8 (Go would accept other bytes;
/// no Docker client sends them, so refusing them costs nothing and keeps every
/// later stage on `str`).
fn unescape(s: &str, plus_is_space: bool, what: &str) -> Result<String, TargetError> {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let pair = bytes
                    .get(i + 1)
                    .copied()
                    .and_then(hex)
                    .zip(bytes.get(i + 2).copied().and_then(hex));
                match pair {
                    Some((hi, lo)) => out.push((hi * 16 + lo) as u8),
                    None => {
                        let end = (i + 3).min(bytes.len());
                        return Err(TargetError::Malformed(format!(
                            "invalid escape {:?} in {what}",
                            String::from_utf8_lossy(&bytes[i..end])
                        )));
                    }
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| TargetError::Malformed(format!("{what} is not UTF-8 once decoded")))
}

/// Percent-decode a path as Go's `url.PathUnescape` (which is what fills
/// `r.URL.Path`, the string gorilla/mux matches). A decoded control character
/// (NUL, newline, …) is refused: the daemon's `.*` does not match a newline,
/// and no legitimate name contains one.
pub fn decode_path(raw: &str) -> Result<String, TargetError> {
    let decoded = unescape(raw, false, "path")?;
    if let Some(c) = decoded.chars().find(|c| c.is_control()) {
        return Err(TargetError::Malformed(format!(
            "path contains control character {c:?}"
        )));
    }
    Ok(decoded)
}

/// Go's `path.Clean`, exactly: the one place portcullis cleans a path lexically
/// (routes, archive paths, file API paths and host paths all come here).
///
/// Empty and `.` segments go, `..` removes the segment before it (at the root
/// it is dropped; in a relative path with nothing left to remove it stays), no
/// trailing slash; an empty result is `/` for a rooted path, else `.`.
pub fn go_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for segment in p.split('/') {
        match segment {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `path.Join("/", p)`: `p` taken as a path under the root, cleaned. This
/// is what the daemon does with an archive `path` before anything else (so
/// `..` is lexical there: `/a/link/..` is `/a`, whatever `link` points to).
pub fn rooted_clean(p: &str) -> String {
    go_clean(&format!("/{p}"))
}

/// Go's `path.Clean` for a rooted path, plus gorilla/mux's rule that keeps a
/// trailing slash. gorilla/mux answers 301 (and runs no handler) whenever this
/// differs from the request path.
pub fn clean(p: &str) -> String {
    let mut out = rooted_clean(p);
    // Root stays `/`; otherwise gorilla/mux puts a trailing slash back.
    if out != "/" && p.ends_with('/') {
        out.push('/');
    }
    out
}

/// Whether the daemon would route `decoded` without redirecting it first.
pub fn is_canonical(decoded: &str) -> bool {
    // Fast path: no empty, `.` or `..` segment (apart from a trailing slash)
    // means Clean leaves the path alone.
    let body = decoded.strip_prefix('/').unwrap_or(decoded);
    let body = body.strip_suffix('/').unwrap_or(body);
    let simple = decoded.starts_with('/')
        && ((body.is_empty() && decoded.len() == 1)
            || (!body.is_empty()
                && body
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != "..")));
    simple || clean(decoded) == decoded
}

/// Most query parameters Go's `url.ParseQuery` accepts (Go 1.24+ default for
/// `urlmaxqueryparams`); more is a refusal here.
pub const MAX_QUERY_PARAMS: usize = 10_000;

/// Go's `url.ParseQuery`, strict: `&` separates pairs, empty pairs are skipped,
/// a pair without `=` has the value "", `+` is a space, and any `;` in a raw
/// pair or any bad escape is an error (the daemon's `ParseForm` answers 400).
/// Values stay in order, duplicates included.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, TargetError> {
    let mut out = Vec::new();
    for pair in raw.split('&') {
        if pair.contains(';') {
            return Err(TargetError::Malformed(
                "invalid semicolon separator in query".into(),
            ));
        }
        if pair.is_empty() {
            continue;
        }
        if out.len() == MAX_QUERY_PARAMS {
            return Err(TargetError::Malformed(format!(
                "more than {MAX_QUERY_PARAMS} query parameters"
            )));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((
            unescape(k, true, "query key")?,
            unescape(v, true, "query value")?,
        ));
    }
    Ok(out)
}

/// Split a leading `/vX.Y` off a decoded, canonical path.
///
/// The daemon registers each route twice, under `/v{version:[0-9.]+}` and bare.
/// Returns the version (if any) and the rest of the path. A first segment that
/// the daemon would take for a version but that is not two integers
/// (`/v1/`, `/v1.2.3/`, `/v./`) is an error: no route is served under it here.
pub fn split_version(decoded: &str) -> Result<(Option<ApiVersion>, &str), String> {
    let Some(after_v) = decoded.strip_prefix("/v") else {
        return Ok((None, decoded));
    };
    let (segment, rest) = match after_v.find('/') {
        Some(i) => (&after_v[..i], &after_v[i..]),
        None => (after_v, ""),
    };
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // `/volumes`, `/vx`: not a version prefix at all.
        return Ok((None, decoded));
    }
    let version =
        ApiVersion::parse(segment).ok_or_else(|| format!("malformed API version {segment:?}"))?;
    if rest.is_empty() {
        return Err(format!("nothing after the version prefix v{segment}"));
    }
    Ok((Some(version), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_read_as_the_daemon_reads_them() {
        let form = |v: &str| vec![("link".to_string(), v.to_string())];
        for truthy in ["1", "true", "off", "yes", " True "] {
            assert!(form_bool(&form(truthy), "link"), "{truthy:?}");
        }
        for falsy in ["", "0", "no", "FALSE", "none", " 0 "] {
            assert!(!form_bool(&form(falsy), "link"), "{falsy:?}");
        }
        assert!(!form_bool(&[], "link"));
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn version_parts_are_integers() {
        assert_eq!(ApiVersion::parse("1.044"), Some(ApiVersion::new(1, 44)));
        assert_eq!(ApiVersion::parse("1.41"), Some(ApiVersion::new(1, 41)));
        for bad in ["1", "1.", ".4", "1.4.1", "1.+4", "a.b", "1.99999999999"] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn split_version_cases() {
        assert_eq!(
            split_version("/v1.41/info"),
            Ok((Some(ApiVersion::new(1, 41)), "/info"))
        );
        assert_eq!(split_version("/volumes"), Ok((None, "/volumes")));
        assert_eq!(split_version("/vx/info"), Ok((None, "/vx/info")));
        assert!(split_version("/v1/info").is_err());
        assert!(split_version("/v1.2.3/info").is_err());
        assert!(split_version("/v1.41").is_err());
    }

    #[test]
    fn decode_path_is_strict() {
        assert_eq!(decode_path("/a%2Fb+c").unwrap(), "/a/b+c");
        assert!(decode_path("/a%zz").is_err());
        assert!(decode_path("/a%2").is_err());
        assert!(decode_path("/a%00b").is_err());
        assert!(decode_path("/a%0Ab").is_err());
        assert!(decode_path("/a%ff").is_err());
        assert_eq!(decode_path("/caf%C3%A9").unwrap(), "/café");
    }

    #[test]
    fn clean_matches_go_with_trailing_slash() {
        for (input, want) in [
            ("/", "/"),
            ("//", "/"),
            ("//x", "/x"),
            ("/a/../b", "/b"),
            ("/a/./b", "/a/b"),
            ("/..", "/"),
            ("/networks/", "/networks/"),
            ("/a//b/", "/a/b/"),
            ("/a/b/..", "/a"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
        assert!(is_canonical("/"));
        assert!(is_canonical("/networks/"));
        assert!(is_canonical("/containers/a.b..c/json"));
        for bad in [
            "//", "//x", "/a/../b", "/./x", "/x/.", "/x/..", "/a//b", "/x//",
        ] {
            assert!(!is_canonical(bad), "{bad}");
        }
    }

    /// Go's own table for `path.Clean` (path_test.go `cleantests`, which the
    /// `path.Clean` example in the documentation is drawn from).
    #[test]
    fn go_clean_matches_go_path_clean() {
        for (input, want) in [
            // Already clean
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            // Remove trailing slash
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("a/b/c/", "a/b/c"),
            ("./", "."),
            ("../", ".."),
            ("../../", "../.."),
            ("/abc/", "/abc"),
            // Remove doubled slash
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("///abc", "/abc"),
            ("//abc//", "/abc"),
            ("abc//", "abc"),
            // Remove . elements
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            // Remove .. elements
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            // Combinations
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
            // The documentation's example
            ("a/c", "a/c"),
            ("a//c", "a/c"),
            ("a/c/.", "a/c"),
            ("a/c/b/..", "a/c"),
            ("/../a/c", "/a/c"),
            ("/../a/b/../././/c", "/a/c"),
        ] {
            assert_eq!(go_clean(input), want, "Clean({input:?})");
        }
    }

    #[test]
    fn rooted_clean_is_join_under_root() {
        for (input, want) in [
            ("", "/"),
            ("app/config", "/app/config"),
            (
                "/app/config/instructions/../instructions/CLAUDE.md",
                "/app/config/instructions/CLAUDE.md",
            ),
            ("/a/../../../etc/shadow", "/etc/shadow"),
            ("../x", "/x"),
            ("/a/b/.", "/a/b"),
            ("/a/b/", "/a/b"),
        ] {
            assert_eq!(rooted_clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn query_follows_go_parse_query() {
        assert_eq!(
            parse_query("a=1&b=x+y&a=2&&c&d=%3B").unwrap(),
            q(&[("a", "1"), ("b", "x y"), ("a", "2"), ("c", ""), ("d", ";")])
        );
        assert!(parse_query("a=1;b=2").is_err());
        assert!(parse_query("a=1&b=;").is_err());
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a%=1").is_err());
        assert_eq!(parse_query("").unwrap(), vec![]);
    }

    #[test]
    fn form_get_returns_first() {
        let form = q(&[("t", "first"), ("t", "second"), ("e", "")]);
        assert_eq!(form_get(&form, "t"), Some("first"));
        assert_eq!(form_get(&form, "e"), Some(""));
        assert_eq!(form_get_nonempty(&form, "e"), None);
        assert_eq!(form_get(&form, "x"), None);
    }
}

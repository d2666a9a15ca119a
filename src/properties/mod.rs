//! The properties the parsers between a caller and the daemon must hold,
//! written once and checked two ways: by the fuzz targets in `fuzz/` (a
//! coverage-guided search, `cargo fuzz`) and by the property tests below
//! (`proptest`, so that `cargo test` exercises them on every run).
//!
//! Why properties and not only "no panic": a panic is a denial of service, but
//! a parser that reads bytes differently from the daemon is a bypass, and that
//! shows only as a broken relation between two readings of the same request.
//! Each function panics, naming the input, when a property fails.
//!
//! Compiled only for tests and fuzzing (`cfg(fuzzing)`, set by `cargo fuzz`):
//! nothing here ships in the product.

use crate::classify::{self, Classified, ClassifyError, Service, VersionRange};
use crate::files::inspect_upload;
use crate::inspect::{self, Schema};

mod download;
mod wal;

pub use download::download;
pub use wal::wal_segment;

/// What a classification decides on, comparable across two spellings.
fn decided(c: &Classified) -> String {
    format!(
        "{} {:?} {} {:?} {}",
        c.action, c.resource, c.path, c.query, c.route.pattern
    )
}

/// Every byte but the unreserved ones and `/`, percent-encoded: the spelling
/// of a decoded path that no decoder can read two ways.
fn encode_path(decoded: &str) -> String {
    let mut out = String::with_capacity(decoded.len() * 3);
    for b in decoded.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The classifier:
/// - is deterministic;
/// - routes by the decoded path alone: any other spelling of the same decoded
///   path (here, every byte encoded) gets the same action on the same resource,
///   so a path that decodes to another route is never mis-routed;
/// - gives the versioned and the unversioned form of a Docker route the same
///   answer, and refuses a version prefix on portcullis's own routes.
pub fn classifier(method: &str, target: &str) {
    let versions = VersionRange::default();
    let first = classify::classify(method, target, &versions);
    let again = classify::classify(method, target, &versions);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(decided(a), decided(b), "{method} {target}"),
        (Err(a), Err(b)) => assert_eq!(a, b, "{method} {target}"),
        _ => panic!("{method} {target}: {first:?} then {again:?}"),
    }
    let Ok(c) = first else { return };
    let raw_query = target.split_once('?').map(|(_, q)| q);
    let with_query = |path: String| match raw_query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    // `c.path` has no version prefix and no trailing-slash change: the
    // unversioned form of the same request.
    let unversioned = with_query(encode_path(&c.path));
    let other = classify::classify(method, &unversioned, &versions)
        .unwrap_or_else(|e| panic!("{method} {target} is {}, but {unversioned}: {e}", c.action));
    assert_eq!(
        decided(&c),
        decided(&other),
        "{method} {target} vs {unversioned}"
    );

    let versioned = with_query(format!("/v{}{}", versions.max, encode_path(&c.path)));
    let v = classify::classify(method, &versioned, &versions);
    match c.route.service {
        Service::Docker => {
            let v = v.unwrap_or_else(|e| panic!("{method} {target} vs {versioned}: {e}"));
            assert_eq!(decided(&c), decided(&v), "{method} {target} vs {versioned}");
        }
        Service::Admin | Service::Files | Service::Agent => assert!(
            matches!(v, Err(ClassifyError::UnknownRoute { .. })),
            "{method} {versioned}: a version prefix on portcullis's own API: {v:?}"
        ),
    }
}

/// Credentials for [`request_head`]: uid 1000 is `ci`, one token verifies.
struct OneToken;

impl crate::identify::Credentials for OneToken {
    fn caller_for_uid(&self, uid: u32) -> Option<String> {
        (uid == 1000).then(|| "ci".to_string())
    }
    fn verify_token(&self, secret: &str) -> Option<(String, String)> {
        (secret == "pcl_good").then(|| ("dashboard".to_string(), "t1".to_string()))
    }
}

/// A whole request head through identify and classify, on a unix connection
/// from uid `uid` (0 is the administrator):
/// - no credential header is left to reach the daemon, whatever was sent;
/// - a bearer token that does not verify is a refusal, never a fall-back to
///   the peer's uid; one that does names its caller;
/// - no other header names the caller (identify reads only the credential
///   header and the connection);
/// - classification is as [`classifier`] requires.
pub fn request_head(method: &str, target: &str, headers: &http::HeaderMap, uid: u32) {
    use crate::identify::{identify, Identification};
    use crate::listen::{Connection, Peer};
    let conn = Connection {
        id: 1,
        listener: "unix:///fuzz.sock".into(),
        pinned_caller: None,
        peer: Peer::Unix {
            uid,
            gid: uid,
            pid: None,
        },
    };
    let mut sent = headers.clone();
    let outcome = identify(&conn, &mut sent, &[0], &OneToken);
    assert!(
        !sent.contains_key(http::header::AUTHORIZATION),
        "a credential header would reach the daemon: {headers:?}"
    );
    let auth: Vec<_> = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .collect();
    let mut without_auth = headers.clone();
    without_auth.remove(http::header::AUTHORIZATION);
    let by_peer = identify(&conn, &mut without_auth, &[0], &OneToken)
        .expect("a unix peer without a credential is always identified or unidentified");
    match auth.first() {
        None => assert_eq!(outcome.as_ref(), Ok(&by_peer), "{headers:?}"),
        Some(value) if *value == "Bearer pcl_good" || *value == "bearer pcl_good" => {
            let caller = outcome.expect("a good token verifies");
            assert_eq!(caller.name, "dashboard");
            assert!(matches!(caller.via, Identification::Token { .. }));
        }
        // http's `get` returns the first; identify must read the same one.
        Some(value) => {
            let trimmed = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim);
            if trimmed != Some("pcl_good") {
                assert!(outcome.is_err(), "{value:?} identified as {outcome:?}");
            }
        }
    }
    classifier(method, target);
}

/// Every schema a body is decoded with, and the schema-less reading.
fn schemas() -> Vec<&'static Schema> {
    let mut all: Vec<&'static Schema> = crate::inspect::schema::all_named().to_vec();
    all.push(&crate::inspect::schema::GENERIC);
    all
}

/// The Go-JSON decoder:
/// - never accepts what is not JSON (a strict RFC 8259 parser agrees that
///   every accepted body is one JSON value);
/// - its canonical view, serialized (as the admin and policy stages see it),
///   decodes again to the same value: what was decided on is what the bytes say.
pub fn go_json(bytes: &[u8]) {
    for schema in schemas() {
        let Ok(canonical) = inspect::decode(bytes, schema) else {
            continue;
        };
        assert!(
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok(),
            "accepted as {schema:?} but not JSON: {:?}",
            String::from_utf8_lossy(bytes)
        );
        let reencoded = serde_json::to_vec(&canonical).expect("a Value serializes");
        let again = inspect::decode(&reencoded, schema).unwrap_or_else(|e| {
            panic!(
                "{:?} decoded as {schema:?} to {canonical}, which does not decode again: {e}",
                String::from_utf8_lossy(bytes)
            )
        });
        assert_eq!(
            again,
            canonical,
            "{:?} as {schema:?}: the canonical view changes when read again",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Go's `url.ParseQuery` as used on form bodies and query strings: what it
/// accepts, written back with `&` and `=` and percent-encoding, reads back
/// to the same pairs in the same order.
pub fn form(bytes: &[u8]) {
    let Ok(pairs) = inspect::parse_go_query(bytes) else {
        return;
    };
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        ser.append_pair(k, v);
    }
    let written = ser.finish();
    let again = inspect::parse_go_query(written.as_bytes())
        .unwrap_or_else(|e| panic!("{:?} -> {written:?}: {e}", String::from_utf8_lossy(bytes)));
    assert_eq!(pairs, again, "{:?}", String::from_utf8_lossy(bytes));
}

/// The upload checker: an accepted archive's entries and link targets all
/// stay inside the destination directory, and no entry is written through a
/// symlink the same archive made (its real destination would differ from the
/// one the policy saw).
pub fn upload(bytes: &[u8], dest: &str) {
    let Ok(inspection) = inspect_upload(bytes, dest) else {
        return;
    };
    let dir = &inspection.dest_dir;
    let within = |p: &str| p == dir || dir == "/" || p.starts_with(&format!("{dir}/"));
    let mut symlinks: Vec<&str> = Vec::new();
    for entry in &inspection.entries {
        assert!(within(&entry.path), "{entry:?} leaves {dir}");
        if let Some(target) = &entry.link_target {
            assert!(within(target), "{entry:?} links out of {dir}");
        }
        for link in &symlinks {
            assert!(
                !entry.path.starts_with(&format!("{link}/")),
                "{entry:?} is written through the archive's own symlink {link}"
            );
        }
        if entry.kind == crate::files::UploadEntryKind::Symlink {
            symlinks.push(&entry.path);
        }
    }
}

/// A JSON value's nesting depth, for generators that must stay under the
/// decoder's limit.
#[cfg(test)]
fn depth(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Request targets: real routes with odd names in them, and paths built
    /// from the pieces that matter to routing.
    fn target() -> impl Strategy<Value = String> {
        let route = prop_oneof![
            Just("/containers/{}/json"),
            Just("/v1.41/containers/{}/start"),
            Just("/containers/{}/archive?path=/app"),
            Just("/v1.044/images/{}/json"),
            Just("/images/{}/push?tag=x"),
            Just("/exec/{}/start"),
            Just("/containers/create?name={}"),
            Just("/api/v1/containers/{}/files?path=/x"),
            Just("/api/v1/trust/{}"),
        ];
        let name = "([a-z0-9_.:+-]|%2[fFeE]|%25|%3[fF]|/|\\.\\.){1,8}";
        prop_oneof![
            (route, name).prop_map(|(r, n)| r.replace("{}", &n)),
            pieces(),
        ]
    }

    /// Paths built from route words, version prefixes, encodings of `/` and
    /// `.`, and odd bytes.
    fn pieces() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("containers".to_string()),
            Just("images".to_string()),
            Just("exec".to_string()),
            Just("json".to_string()),
            Just("start".to_string()),
            Just("archive".to_string()),
            Just("api".to_string()),
            Just("v1".to_string()),
            Just("files".to_string()),
            Just("v1.41".to_string()),
            Just("v1.044".to_string()),
            Just("%2F".to_string()),
            Just("%2e%2e".to_string()),
            Just(".".to_string()),
            Just("".to_string()),
            "[a-z0-9_.:+%-]{1,8}",
        ];
        (
            proptest::collection::vec(piece, 1..6),
            proptest::option::of("[a-z]{1,4}=[a-z0-9%+;&]{0,6}"),
        )
            .prop_map(|(pieces, query)| {
                let mut t = format!("/{}", pieces.join("/"));
                if let Some(q) = query {
                    t.push('?');
                    t.push_str(&q);
                }
                t
            })
    }

    fn method() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("PUT"),
            Just("DELETE"),
            Just("HEAD")
        ]
    }

    /// JSON values of the shapes create bodies take, keys in odd cases.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z/:=.]{0,8}".prop_map(Value::from),
        ];
        let key = prop_oneof![
            Just("HostConfig".to_string()),
            Just("hostconfig".to_string()),
            Just("Privileged".to_string()),
            Just("Binds".to_string()),
            Just("Image".to_string()),
            Just("Cmd".to_string()),
            Just("Labels".to_string()),
            Just("Mounts".to_string()),
            Just("NetworkMode".to_string()),
            "[A-Za-z]{1,6}",
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn classifier_holds(m in method(), t in target()) {
            classifier(m, &t);
        }

        #[test]
        fn go_json_holds(v in json_value()) {
            prop_assume!(depth(&v) < 100);
            go_json(serde_json::to_string(&v).unwrap().as_bytes());
        }

        #[test]
        fn go_json_holds_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            go_json(&bytes);
        }

        #[test]
        fn request_head_holds(
            m in method(),
            t in target(),
            auth in proptest::option::of(prop_oneof![
                Just("Bearer pcl_good".to_string()),
                Just("bearer  pcl_good ".to_string()),
                Just("Basic pcl_good".to_string()),
                "Bearer [a-z_]{0,10}",
            ]),
            extra in proptest::collection::vec(("x-[a-z]{1,5}", "[ -~]{0,10}"), 0..3),
            uid in prop_oneof![Just(0u32), Just(1000u32), Just(1001u32)],
        ) {
            let mut headers = http::HeaderMap::new();
            if let Some(a) = auth {
                headers.insert(http::header::AUTHORIZATION, a.parse().unwrap());
            }
            for (k, v) in extra {
                if let (Ok(k), Ok(v)) = (k.parse::<http::HeaderName>(), v.parse()) {
                    headers.append(k, v);
                }
            }
            request_head(m, &t, &headers, uid);
        }

        #[test]
        fn form_holds(s in "[a-z=&%+;0-9A-F]{0,24}") {
            form(s.as_bytes());
        }

        #[test]
        fn wal_reader_holds(
            mode in any::<u8>(),
            sizes in proptest::collection::vec(any::<u8>(), 0..5),
            damage in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            // Even modes build a valid segment from `sizes` and damage it.
            let mut data = vec![mode & !1];
            data.extend_from_slice(&sizes);
            data.extend_from_slice(&damage);
            wal_segment(&data);
        }

        #[test]
        fn wal_reader_holds_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut data = vec![1u8];
            data.extend_from_slice(&bytes);
            wal_segment(&data);
        }

        #[test]
        fn download_filter_holds(
            chunk in any::<u8>(),
            entries in proptest::collection::vec(download_entry(), 0..8),
        ) {
            let mut data = vec![chunk];
            data.extend_from_slice(&download_tar(&entries));
            download(&data);
        }
    }

    /// An entry of a daemon's archive for `/srv/app`: a kind, a name under
    /// `app/` (some refused by the rules, some odd) and a link target.
    fn download_entry() -> impl Strategy<Value = (u8, String, String)> {
        let name = prop_oneof![
            Just("app".to_string()),
            Just("app/".to_string()),
            "app/(ok|secret|id\\.key|sub|\\.\\.|\\.)(/(ok|secret|x\\.key|z)){0,2}/?",
            "[a-z./]{0,12}",
            Just(format!("app/{}", "d".repeat(120))),
        ];
        (0u8..5, name.clone(), name)
    }

    /// A tar of `entries` as the `tar` crate writes it (long names through
    /// GNU extensions).
    fn download_tar(entries: &[(u8, String, String)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (kind, name, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            let data: &[u8] = match kind {
                0 => {
                    h.set_entry_type(tar::EntryType::Regular);
                    b"data"
                }
                1 => {
                    h.set_entry_type(tar::EntryType::Directory);
                    b""
                }
                2 | 3 => {
                    let t = if *kind == 2 {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    h.set_entry_type(t);
                    if b.append_link(&mut h, name, link).is_err() {
                        continue;
                    }
                    continue;
                }
                _ => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    b""
                }
            };
            h.set_size(data.len() as u64);
            let _ = b.append_data(&mut h, name, data);
        }
        b.into_inner().unwrap_or_default()
    }

    /// Every seed of the fuzz corpora, run through its property: the corpora
    /// are committed small, so this replays all of them on every `cargo test`.
    #[test]
    fn fuzz_seed_corpora_hold() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut seen = 0;
        for (target, check) in [
            ("classify", &(|b: &[u8]| classify_seed(b)) as &dyn Fn(&[u8])),
            ("go_json", &go_json),
            ("form", &form),
            ("upload", &|b: &[u8]| upload(b, "/app")),
            ("request_head", &request_head_seed),
            ("wal_segment", &wal_segment),
            ("download", &download),
        ] {
            let Ok(dir) = std::fs::read_dir(root.join(target)) else {
                continue;
            };
            for file in dir {
                let bytes = std::fs::read(file.unwrap().path()).unwrap();
                check(&bytes);
                seen += 1;
            }
        }
        assert!(seen > 0, "no seeds under {}", root.display());
    }

    /// A request-head seed: a uid byte, then the head as sent (see
    /// `fuzz/fuzz_targets/request_head.rs`); only the request line and the
    /// headers matter here, read simply.
    fn request_head_seed(bytes: &[u8]) {
        let Some((&who, head)) = bytes.split_first() else {
            return;
        };
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let mut line = lines.next().unwrap_or("").split(' ');
        let (Some(method), Some(target)) = (line.next(), line.next()) else {
            return;
        };
        let mut headers = http::HeaderMap::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if let (Ok(k), Ok(v)) = (k.parse::<http::HeaderName>(), v.trim().parse()) {
                    headers.append(k, v);
                }
            }
        }
        request_head(method, target, &headers, [0, 1000, 1001][who as usize % 3]);
    }

    /// A classify seed is `METHOD TARGET`.
    fn classify_seed(bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let (method, target) = text.split_once(' ').unwrap_or(("GET", &text));
        classifier(method, target.trim_end_matches('\n'));
    }

    #[test]
    fn encode_path_reads_back() {
        assert_eq!(encode_path("/a b/c%"), "/a%20b/c%25");
    }
}

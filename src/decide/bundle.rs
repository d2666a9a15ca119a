//! OPA bundles: policies and trust data in one signed `.tar.gz`.
//!
//! Why OPA's format and not one of our own: a fleet already distributes
//! bundles (a bundle server, `opa build`, `opa sign`, CI that signs); one
//! artifact with a revision and a signature is what every proxy of the fleet
//! loads, and the same tools can inspect it.
//!
//! What a bundle holds, for portcullis:
//! - `.manifest` (optional): `{"revision": "...", "roots": [...]}`; the roots,
//!   when given, must cover `portcullis` (the package and the data path used).
//! - `*.rego` anywhere in the archive, but `*_test.rego`: the policies.
//! - `data.json` at the root (optional): `{"portcullis": {"trust": T}}`, where
//!   `T` is what `--trust-file` takes (a list of relationships, or
//!   `{callers, relationships}`). Any other data is refused: the policies
//!   read trust only, and data that would be silently dropped is a surprise.
//! - `.signatures.json` (OPA's format): `{"signatures": [JWT]}`, the JWT's
//!   payload `{"files": [{"name", "hash", "algorithm": "SHA-256"}]}` naming
//!   every other file with its SHA-256 (hex; `data.json` and `.manifest`
//!   are hashed in canonical form: keys sorted, no spaces, as OPA does).
//!
//! Verification fails closed: with a key, a bundle without a signature, with
//! a signature that does not verify, with a file not signed, or a signed
//! file missing or changed, is refused whole. HS256 (an HMAC
//! secret) and RS256 (RSA PEM keys, through ring) are implemented.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Where the trust data sits in `data.json`: `data.portcullis.trust`.
pub const TRUST_PATH: [&str; 2] = ["portcullis", "trust"];

const MANIFEST: &str = ".manifest";
const SIGNATURES: &str = ".signatures.json";
const DATA: &str = "data.json";
/// A bundle larger than this (uncompressed) is refused.
const MAX_BYTES: u64 = 64 << 20;

/// A signing or verification key: an HMAC secret (HS256), or an RSA key in
/// PEM (RS256: a public key to verify, a private key to sign).
pub enum Key {
    Hmac(Vec<u8>),
    /// PKCS#1 `RSAPublicKey` DER (from a `PUBLIC KEY` or `RSA PUBLIC KEY` PEM).
    RsaPublic(Vec<u8>),
    RsaPrivate(Box<ring::signature::RsaKeyPair>),
}

impl Key {
    fn alg(&self) -> &'static str {
        match self {
            Key::Hmac(_) => "HS256",
            Key::RsaPublic(_) | Key::RsaPrivate(_) => "RS256",
        }
    }
}

/// A bundle as read, verified when a key was given.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub revision: String,
    pub roots: Vec<String>,
    /// The served policies: (name in the archive, source), sorted by name.
    pub policies: Vec<(String, String)>,
    /// `data.portcullis.trust`, if the bundle has it.
    pub trust: Option<Value>,
    /// Whether a signature was verified.
    pub verified: bool,
}

/// Read and check the bundle at `path`; with `hs256_key`, verify its
/// signature and every file's hash.
pub fn read(path: &Path, key: Option<&Key>) -> anyhow::Result<Bundle> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let files = unpack(&bytes)?;
    parse(files, key)
}

fn unpack(bytes: &[u8]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut archive = tar::Archive::new(gz.take(MAX_BYTES + 1));
    let mut files = BTreeMap::new();
    for entry in archive.entries().context("not a tar.gz archive")? {
        let mut entry = entry.context("not a tar.gz archive")?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let raw = entry.path().context("an entry without a path")?;
        let name = normalize(&raw.to_string_lossy())?;
        if !kind.is_file() {
            bail!("{name}: only regular files may be in a bundle");
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .with_context(|| format!("reading {name}"))?;
        if files.insert(name.clone(), content).is_some() {
            bail!("{name} is in the archive twice");
        }
    }
    let total: usize = files.values().map(Vec::len).sum();
    if total as u64 > MAX_BYTES {
        bail!("larger than {MAX_BYTES} bytes uncompressed");
    }
    Ok(files)
}

/// `./a/b`, `/a/b` → `a/b`; `..` is refused.
fn normalize(name: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        bail!("{name}: `..` in a bundle path");
    }
    if parts.is_empty() {
        bail!("an entry with an empty path");
    }
    Ok(parts.join("/"))
}

fn parse(mut files: BTreeMap<String, Vec<u8>>, key: Option<&Key>) -> anyhow::Result<Bundle> {
    let signatures = files.remove(SIGNATURES);
    let verified = match (key, signatures) {
        (Some(key), Some(sig)) => {
            verify(&files, &sig, key)?;
            true
        }
        (Some(_), None) => {
            bail!("unsigned ({SIGNATURES} is missing) and a verification key was given")
        }
        (None, Some(_)) => {
            tracing::warn!("the bundle is signed but no --bundle-verification-key was given: the signature is not checked");
            false
        }
        (None, None) => false,
    };
    let (revision, roots) = match files.get(MANIFEST) {
        Some(m) => {
            let m: Value = serde_json::from_slice(m).context(".manifest: not JSON")?;
            let revision = match m.get("revision") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => bail!(".manifest: revision is not a string"),
            };
            let roots = match m.get("roots") {
                None | Some(Value::Null) => Vec::new(),
                Some(v) => serde_json::from_value::<Vec<String>>(v.clone())
                    .context(".manifest: roots is not a list of strings")?,
            };
            (revision, roots)
        }
        None => (String::new(), Vec::new()),
    };
    if !roots.is_empty() && !roots.iter().any(|r| r.is_empty() || r == "portcullis") {
        bail!(
            ".manifest: roots {roots:?} do not cover `portcullis` (the policies' package and data)"
        );
    }
    let mut policies = Vec::new();
    let mut trust = None;
    for (name, content) in &files {
        let base = name.rsplit('/').next().unwrap_or(name);
        if name.ends_with(".rego") {
            if name.ends_with("_test.rego") {
                continue;
            }
            let text =
                String::from_utf8(content.clone()).map_err(|_| anyhow!("{name}: not UTF-8"))?;
            policies.push((name.clone(), text));
        } else if name == DATA {
            trust = trust_of(content)?;
        } else if matches!(base, "data.json" | "data.yaml" | "data.yml" | "patch.json")
            || name.ends_with(".wasm")
        {
            bail!("{name}: portcullis takes data only from the root data.json (data.portcullis.trust), and no wasm");
        }
    }
    if policies.is_empty() {
        bail!("no .rego policy in the bundle");
    }
    Ok(Bundle {
        revision,
        roots,
        policies,
        trust,
        verified,
    })
}

fn trust_of(content: &[u8]) -> anyhow::Result<Option<Value>> {
    let data: Value = serde_json::from_slice(content).context("data.json: not JSON")?;
    let Value::Object(mut top) = data else {
        bail!("data.json: not an object");
    };
    let Some(portcullis) = top.remove(TRUST_PATH[0]) else {
        if let Some(k) = top.keys().next() {
            bail!("data.json: unexpected key {k:?} (only portcullis.trust)");
        }
        return Ok(None);
    };
    if let Some(k) = top.keys().next() {
        bail!("data.json: unexpected key {k:?} (only portcullis.trust)");
    }
    let Value::Object(mut portcullis) = portcullis else {
        bail!("data.json: portcullis is not an object");
    };
    let trust = portcullis.remove(TRUST_PATH[1]);
    if let Some(k) = portcullis.keys().next() {
        bail!("data.json: unexpected key portcullis.{k} (only portcullis.trust)");
    }
    Ok(trust)
}

/// The hash OPA signs: SHA-256 (hex) of the bytes, or of the canonical JSON
/// for its structured documents (`data.json`, `.manifest`; as OPA's
/// `IsStructuredDoc`).
fn file_hash(name: &str, content: &[u8]) -> anyhow::Result<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let digest = if base == DATA || base == MANIFEST {
        let value: Value =
            serde_json::from_slice(content).with_context(|| format!("{name}: not JSON"))?;
        let mut out = Vec::new();
        canonical(&value, &mut out);
        Sha256::digest(&out)
    } else {
        Sha256::digest(content)
    };
    Ok(hex::encode(digest))
}

/// Compact JSON with object keys sorted (serde_json keeps insertion order here).
fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(v, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}

fn verify(files: &BTreeMap<String, Vec<u8>>, signatures: &[u8], key: &Key) -> anyhow::Result<()> {
    let sig: Value = serde_json::from_slice(signatures).context(".signatures.json: not JSON")?;
    let tokens = sig
        .get("signatures")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!(".signatures.json: no `signatures` list"))?;
    let [token] = tokens.as_slice() else {
        bail!(
            ".signatures.json: exactly one signature expected, found {}",
            tokens.len()
        );
    };
    let token = token
        .as_str()
        .ok_or_else(|| anyhow!(".signatures.json: the signature is not a string"))?;
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!(".signatures.json: not a JWT (header.payload.signature)");
    };
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(h)
            .context(".signatures.json: JWT header is not base64url")?,
    )
    .context(".signatures.json: JWT header is not JSON")?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if !matches!(alg, "HS256" | "RS256") {
        bail!(".signatures.json: signing algorithm {alg:?} is not supported (HS256, RS256)");
    }
    if alg != key.alg() {
        bail!(
            ".signatures.json: signed with {alg} but the verification key is for {}",
            key.alg()
        );
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .context(".signatures.json: JWT signature is not base64url")?;
    let message = format!("{h}.{p}");
    let good = match key {
        Key::Hmac(secret) => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).map_err(|e| anyhow!("HMAC key: {e}"))?;
            mac.update(message.as_bytes());
            mac.verify_slice(&signature).is_ok()
        }
        Key::RsaPublic(der) => ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            der,
        )
        .verify(message.as_bytes(), &signature)
        .is_ok(),
        Key::RsaPrivate(_) => bail!("verifying needs the RSA public key, not the private key"),
    };
    if !good {
        bail!("the signature does not verify with the given key");
    }
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(p)
            .context(".signatures.json: JWT payload is not base64url")?,
    )
    .context(".signatures.json: JWT payload is not JSON")?;
    let listed = payload
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!(".signatures.json: the signed payload lists no files"))?;
    let mut signed = BTreeMap::new();
    for f in listed {
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        let hash = f.get("hash").and_then(Value::as_str).unwrap_or("");
        let algorithm = f.get("algorithm").and_then(Value::as_str).unwrap_or("");
        if algorithm != "SHA-256" {
            bail!("{name}: hash algorithm {algorithm:?} is not supported (SHA-256 only)");
        }
        signed.insert(normalize(name)?, hash.to_ascii_lowercase());
    }
    for (name, content) in files {
        let Some(expected) = signed.remove(name) else {
            bail!("{name} is in the bundle but not signed");
        };
        if file_hash(name, content)? != expected {
            bail!("{name}: its hash does not match the signed one (the file was changed)");
        }
    }
    if let Some(name) = signed.keys().next() {
        bail!("{name} is signed but missing from the bundle");
    }
    Ok(())
}

/// Build a bundle: `.manifest` (revision, roots `["portcullis"]`), the
/// policies under `policies/`, `data.json` with `trust` when given, and,
/// with an HS256 key, `.signatures.json`.
pub fn build(
    policies: &[(String, String)],
    trust: Option<&Value>,
    revision: Option<&str>,
    key: Option<&Key>,
) -> anyhow::Result<Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, text) in policies {
        let base = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{name}: no file name"))?;
        files.insert(format!("policies/{base}"), text.clone().into_bytes());
    }
    if let Some(trust) = trust {
        let data = json!({ TRUST_PATH[0]: { TRUST_PATH[1]: trust } });
        files.insert(DATA.into(), serde_json::to_vec_pretty(&data)?);
    }
    let revision = match revision {
        Some(r) => r.to_string(),
        None => {
            let mut h = Sha256::new();
            for (name, content) in &files {
                h.update(name.as_bytes());
                h.update([0]);
                h.update(content);
            }
            hex::encode(h.finalize())[..16].to_string()
        }
    };
    let manifest = json!({"revision": revision, "roots": ["portcullis"]});
    files.insert(MANIFEST.into(), serde_json::to_vec_pretty(&manifest)?);
    if let Some(key) = key {
        let mut listed = Vec::new();
        for (name, content) in &files {
            listed.push(
                json!({"name": name, "hash": file_hash(name, content)?, "algorithm": "SHA-256"}),
            );
        }
        let token = sign(&json!({ "files": listed }), key)?;
        files.insert(
            SIGNATURES.into(),
            serde_json::to_vec(&json!({ "signatures": [token] }))?,
        );
    }
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (name, content) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, content.as_slice())?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// A compact JWS (HS256 or RS256, by the key) over `claims`.
pub fn sign(claims: &Value, key: &Key) -> anyhow::Result<String> {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{}","typ":"JWT"}}"#, key.alg()));
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
    let message = format!("{header}.{payload}");
    let sig = match key {
        Key::Hmac(secret) => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).map_err(|e| anyhow!("HMAC key: {e}"))?;
            mac.update(message.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Key::RsaPrivate(pair) => {
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut sig,
            )
            .map_err(|_| anyhow!("RSA signing failed"))?;
            sig
        }
        Key::RsaPublic(_) => bail!("signing needs the RSA private key, not the public key"),
    };
    Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// A key file: an RSA key in PEM (`PUBLIC KEY`, `RSA PUBLIC KEY`, `PRIVATE
/// KEY`, `RSA PRIVATE KEY`), else an HMAC secret (its bytes, one trailing
/// newline dropped).
pub fn read_key(path: &Path) -> anyhow::Result<Key> {
    let mut key =
        std::fs::read(path).with_context(|| format!("reading the key {}", path.display()))?;
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    if key.is_empty() {
        bail!("the key {} is empty", path.display());
    }
    if !key.starts_with(b"-----BEGIN ") {
        return Ok(Key::Hmac(key));
    }
    let text = String::from_utf8(key).map_err(|_| anyhow!("{}: not PEM", path.display()))?;
    pem_key(&text).with_context(|| format!("the key {}", path.display()))
}

fn pem_key(text: &str) -> anyhow::Result<Key> {
    let first = text.lines().next().unwrap_or("");
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| anyhow!("not PEM"))?;
    let body: String = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .context("PEM body is not base64")?;
    let bad = |e: ring::error::KeyRejected| anyhow!("not an RSA key ring accepts: {e}");
    match label {
        "PUBLIC KEY" => Ok(Key::RsaPublic(spki_rsa(&der)?)),
        "RSA PUBLIC KEY" => Ok(Key::RsaPublic(der)),
        "PRIVATE KEY" => Ok(Key::RsaPrivate(Box::new(
            ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(bad)?,
        ))),
        "RSA PRIVATE KEY" => Ok(Key::RsaPrivate(Box::new(
            ring::signature::RsaKeyPair::from_der(&der).map_err(bad)?,
        ))),
        other => bail!("PEM {other:?}: an RSA key (PUBLIC KEY, PRIVATE KEY) expected"),
    }
}

/// The `RSAPublicKey` inside a `SubjectPublicKeyInfo` (DER): SEQUENCE {
/// SEQUENCE {algorithm}, BIT STRING {0, RSAPublicKey} }.
fn spki_rsa(der: &[u8]) -> anyhow::Result<Vec<u8>> {
    /// One DER element at `at`: (tag, content range, end).
    fn element(der: &[u8], at: usize) -> anyhow::Result<(u8, usize, usize)> {
        let short = || anyhow!("truncated SubjectPublicKeyInfo");
        let tag = *der.get(at).ok_or_else(short)?;
        let first = *der.get(at + 1).ok_or_else(short)? as usize;
        let (len, start) = if first < 0x80 {
            (first, at + 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                bail!("bad DER length");
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *der.get(at + 2 + i).ok_or_else(short)? as usize;
            }
            (len, at + 2 + n)
        };
        let end = start
            .checked_add(len)
            .filter(|e| *e <= der.len())
            .ok_or_else(short)?;
        Ok((tag, start, end))
    }
    let (tag, outer, _) = element(der, 0)?;
    if tag != 0x30 {
        bail!("not a SubjectPublicKeyInfo");
    }
    let (tag, _, after_alg) = element(der, outer)?;
    if tag != 0x30 {
        bail!("not a SubjectPublicKeyInfo");
    }
    let (tag, bits, end) = element(der, after_alg)?;
    if tag != 0x03 || der.get(bits) != Some(&0) {
        bail!("not a SubjectPublicKeyInfo");
    }
    Ok(der[bits + 1..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Vec<(String, String)> {
        vec![("/x/p.rego".into(), "package portcullis\nx := 1\n".into())]
    }

    fn repack(
        bytes: &[u8],
        change: impl Fn(&mut BTreeMap<String, Vec<u8>>),
    ) -> BTreeMap<String, Vec<u8>> {
        let mut files = unpack(bytes).unwrap();
        change(&mut files);
        files
    }

    #[test]
    fn a_signed_bundle_round_trips_and_refuses_changes() {
        let trust = json!([{"caller_service": "ci", "target_container": "ci-*"}]);
        let bytes = build(
            &policies(),
            Some(&trust),
            Some("r1"),
            Some(&Key::Hmac(b"k".to_vec())),
        )
        .unwrap();
        let b = parse(unpack(&bytes).unwrap(), Some(&Key::Hmac(b"k".to_vec()))).unwrap();
        assert!(b.verified);
        assert_eq!(b.revision, "r1");
        assert_eq!(b.policies[0].0, "policies/p.rego");
        assert_eq!(b.trust, Some(trust));
        let err = parse(unpack(&bytes).unwrap(), Some(&Key::Hmac(b"other".to_vec()))).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
        let tampered = repack(&bytes, |f| {
            f.insert(
                "policies/p.rego".into(),
                b"package portcullis\nx := 2\n".to_vec(),
            );
        });
        let err = parse(tampered, Some(&Key::Hmac(b"k".to_vec()))).unwrap_err();
        assert!(err.to_string().contains("hash does not match"), "{err}");
        let added = repack(&bytes, |f| {
            f.insert("more.rego".into(), b"package portcullis\ny := 2\n".to_vec());
        });
        assert!(parse(added, Some(&Key::Hmac(b"k".to_vec())))
            .unwrap_err()
            .to_string()
            .contains("not signed"));
        let unsigned = build(&policies(), None, None, None).unwrap();
        assert!(parse(unpack(&unsigned).unwrap(), Some(&Key::Hmac(b"k".to_vec()))).is_err());
        assert!(!parse(unpack(&unsigned).unwrap(), None).unwrap().verified);
    }

    #[test]
    fn json_is_hashed_canonically() {
        let a = file_hash("data.json", br#"{"b": 1, "a": [1, {"d": 2, "c": 3}]}"#).unwrap();
        let b = file_hash("data.json", br#"{"a":[1,{"c":3,"d":2}],"b":1}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(
            // Not JSON: the bytes as they are.
            a,
            file_hash("x.rego", br#"{"b": 1, "a": [1, {"d": 2, "c": 3}]}"#).unwrap()
        );
    }

    #[test]
    fn other_data_and_bad_roots_are_refused() {
        let mut files = BTreeMap::new();
        files.insert("p.rego".to_string(), b"package portcullis\n".to_vec());
        files.insert("data.json".to_string(), br#"{"other": 1}"#.to_vec());
        assert!(parse(files.clone(), None).is_err());
        files.insert(
            "data.json".to_string(),
            br#"{"portcullis": {"trust": []}}"#.to_vec(),
        );
        files.insert(".manifest".to_string(), br#"{"roots": ["acme"]}"#.to_vec());
        assert!(parse(files.clone(), None)
            .unwrap_err()
            .to_string()
            .contains("roots"));
        files.insert(
            ".manifest".to_string(),
            br#"{"roots": ["portcullis"], "revision": "7"}"#.to_vec(),
        );
        assert_eq!(parse(files, None).unwrap().revision, "7");
        assert!(normalize("../etc/passwd").is_err());
    }
}

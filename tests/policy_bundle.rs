//! Issue 15: OPA bundles. A bundle built by `policy bundle` decides as the
//! directory and trust file it was built from; a bundle whose signature or
//! file hashes do not match is refused at start.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

const TRUST: &str = r#"{"callers": [{"name": "ci", "uids": [4242]}],
 "relationships": [
  {"caller_service": "ci", "target_container": "ci-*", "can_stop": true, "can_start": true},
  {"caller_service": "web", "target_container": "web-1", "can_exec": true}
 ]}"#;

/// `policy bundle` in `dir`: the bundle's path.
fn build_bundle(dir: &Path, key: Option<&Path>) -> PathBuf {
    let trust = dir.join("trust.json");
    std::fs::write(&trust, TRUST).unwrap();
    let out = dir.join("bundle.tar.gz");
    let mut cmd = Command::new(BIN);
    cmd.arg("policy")
        .arg("bundle")
        .arg("--policies")
        .arg(shipped_policies())
        .arg("--trust")
        .arg(&trust)
        .arg("--revision")
        .arg("r-test")
        .arg("-o")
        .arg(&out);
    if let Some(key) = key {
        cmd.arg("--signing-key").arg(key);
    }
    let o = cmd.output().unwrap();
    let said = ok(&o);
    assert!(said.contains("revision r-test"), "{said}");
    out
}

fn key(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

/// `trust check` through the admin API, with the relationship id blanked
/// (each store makes its own ids).
fn check(p: &Proxy, caller: &str, target: &str, action: &str) -> (bool, Vec<String>) {
    // A denial exits non-zero; the answer is on stdout either way.
    let out = stdout(&p.cli(&[
        "trust", "check", "--caller", caller, "--target", target, "--action", action,
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("trust check prints JSON");
    let id = v["trustId"].as_str().unwrap_or("\u{0}").to_string();
    let reasons = v["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().unwrap().replace(&id, "ID"))
        .collect();
    (v["allowed"].as_bool().expect("allowed"), reasons)
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_signed_bundle_decides_as_the_directory_and_trust_file() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "key", "fleet-secret");
    let bundle = build_bundle(dir.path(), Some(&k));
    let trust = dir.path().join("trust.json");
    let from_bundle = Proxy::start(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--bundle-verification-key",
        k.to_str().unwrap(),
    ]);
    let from_dir = Proxy::start(&[
        "--policies",
        shipped_policies().to_str().unwrap(),
        "--trust-file",
        trust.to_str().unwrap(),
    ]);
    let mut allowed = 0;
    for (caller, target, action) in [
        ("ci", "ci-7", "container.stop"),
        ("ci", "ci-7", "container.start"),
        ("ci", "ci-7", "container.exec"),
        ("ci", "web-1", "container.stop"),
        ("web", "web-1", "container.exec"),
        ("web", "web-2", "container.exec"),
        ("nobody", "ci-7", "container.stop"),
        ("ci", "ci-7", "container.create"),
    ] {
        let a = check(&from_bundle, caller, target, action);
        let b = check(&from_dir, caller, target, action);
        assert_eq!(a, b, "{caller} {action} {target}");
        allowed += a.0 as usize;
    }
    assert_eq!(allowed, 3, "the bundle's trust was applied");
    // The bundle's trust changes are recorded, by `config`.
    let log = ok(&from_bundle.cli(&["audit", "query", "--caller", "config", "--format", "json"]));
    assert!(log.contains("bundle revision \\\"r-test\\\""), "{log}");
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_bundle_signed_with_another_key_is_refused() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let signed_with = key(dir.path(), "key", "fleet-secret");
    let expected = key(dir.path(), "other", "another-secret");
    let bundle = build_bundle(dir.path(), Some(&signed_with));
    let (status, log) = ServeCmd::named(dir.path(), "refused")
        .listen(&dir.path().join("s.sock"))
        .args(&[
            "--bundle",
            bundle.to_str().unwrap(),
            "--bundle-verification-key",
        ])
        .arg(&expected)
        .run_to_exit();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("bundle") && log.contains("does not verify"),
        "{log}"
    );
    // Unsigned, with a key: refused too.
    let unsigned = dir.path().join("unsigned");
    std::fs::create_dir(&unsigned).unwrap();
    let bundle = build_bundle(&unsigned, None);
    let (status, log) = ServeCmd::named(dir.path(), "unsigned")
        .listen(&dir.path().join("u.sock"))
        .args(&[
            "--bundle",
            bundle.to_str().unwrap(),
            "--bundle-verification-key",
        ])
        .arg(&signed_with)
        .run_to_exit();
    assert!(!status.success(), "{log}");
    assert!(log.contains("unsigned"), "{log}");
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_tampered_file_is_refused() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path(), "key", "fleet-secret");
    let bundle = build_bundle(dir.path(), Some(&k));
    // Repack with one policy changed (granting everything) and the signature kept.
    let mut files = Vec::new();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(&bundle).unwrap());
    let mut archive = tar::Archive::new(gz);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        if name == "policies/portcullis.rego" {
            content.extend_from_slice(b"\n# tampered\n");
        }
        files.push((name, content));
    }
    assert!(files.iter().any(|(n, _)| n == ".signatures.json"));
    let tampered = dir.path().join("tampered.tar.gz");
    let mut out = tar::Builder::new(flate2::write::GzEncoder::new(
        std::fs::File::create(&tampered).unwrap(),
        flate2::Compression::default(),
    ));
    for (name, content) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, name, content.as_slice())
            .unwrap();
    }
    out.into_inner().unwrap().finish().unwrap();
    let (status, log) = ServeCmd::named(dir.path(), "tampered")
        .listen(&dir.path().join("t.sock"))
        .args(&[
            "--bundle",
            tampered.to_str().unwrap(),
            "--bundle-verification-key",
        ])
        .arg(&k)
        .run_to_exit();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("policies/portcullis.rego: its hash does not match"),
        "{log}"
    );
    // The untampered bundle starts with the same key.
    let p = Proxy::start(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--bundle-verification-key",
        k.to_str().unwrap(),
    ]);
    assert!(check(&p, "ci", "ci-1", "container.stop").0);
}

/// An RSA key pair made by `openssl` in `dir`: (private PEM, public PEM).
fn rsa_pair(dir: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .output()
        .ok()?;
    assert!(made.status.success(), "{}", stderr(&made));
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    Some((private, public))
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn rs256_bundles_verify_with_the_public_key_only() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let Some((private, public)) = rsa_pair(dir.path(), "fleet") else {
        eprintln!("skipped: no openssl to make an RSA key");
        return;
    };
    let (_, other_public) = rsa_pair(dir.path(), "other").unwrap();
    let bundle = build_bundle(dir.path(), Some(&private));
    let p = Proxy::start(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--bundle-verification-key",
        public.to_str().unwrap(),
    ]);
    assert!(check(&p, "ci", "ci-1", "container.stop").0);
    let (status, log) = ServeCmd::named(dir.path(), "other-key")
        .listen(&dir.path().join("o.sock"))
        .args(&[
            "--bundle",
            bundle.to_str().unwrap(),
            "--bundle-verification-key",
        ])
        .arg(&other_public)
        .run_to_exit();
    assert!(!status.success(), "{log}");
    assert!(log.contains("does not verify"), "{log}");
    // An HS256 secret does not verify an RS256 bundle.
    let secret = key(dir.path(), "secret", "fleet-secret");
    let (status, log) = ServeCmd::named(dir.path(), "hmac-key")
        .listen(&dir.path().join("h.sock"))
        .args(&[
            "--bundle",
            bundle.to_str().unwrap(),
            "--bundle-verification-key",
        ])
        .arg(&secret)
        .run_to_exit();
    assert!(!status.success(), "{log}");
    assert!(log.contains("signed with RS256"), "{log}");
}

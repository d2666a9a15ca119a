//! Deny notifications: a caller's refusal through the real docker CLI reaches
//! a local webhook receiver as a signed batch that the receiver verifies;
//! a tampered batch does not verify.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use common::*;

const SECRET: &str = "webhook-test-secret";

/// A one-thread HTTP receiver: hands each POST's signature header and body
/// to the test, and answers 200 when it verifies, 401 when not.
fn receiver() -> (String, mpsc::Receiver<(String, Vec<u8>, bool)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut signature = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => length = v.trim().parse().unwrap_or(0),
                        "x-portcullis-signature" => signature = v.trim().to_string(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let good = portcullis::notify::verify(
                SECRET.as_bytes(),
                &signature,
                &body,
                SystemTime::now(),
                Duration::from_secs(300),
            )
            .is_ok();
            let status = if good { "200 OK" } else { "401 Unauthorized" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tx.send((signature, body, good));
        }
    });
    (url, rx)
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_refusal_reaches_the_webhook_signed() {
    engine();
    let img = image();
    let (url, batches) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let pinned = format!("unix://{}?caller=agent", sock.display());
    let hook = format!("{url}#decision=deny&caller=agent");
    let p = Proxy::start(&[
        "--listen",
        &pinned,
        "--notify-webhook",
        &hook,
        "--notify-secret",
        SECRET,
    ]);
    p.wait_for_socket(&sock);
    let host = format!("unix://{}", sock.display());
    let name = unique("notify");
    let _c = Cleanup(vec![name.clone()]);
    let out = p.docker_at(&host, &["create", "--name", &name, img, "true"]);
    assert!(!out.status.success(), "the agent may not create containers");
    let err = stderr(&out);
    let decision: u64 = err
        .rsplit("(decision ")
        .next()
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no decision id in {err}"));
    // Allowed requests and other callers' denials are filtered out; the
    // batch that arrives holds this refusal.
    let (signature, body, good) = batches
        .recv_timeout(Duration::from_secs(10))
        .expect("a batch within 10 s");
    assert!(good, "the batch does not verify: {signature}");
    let batch: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let records = batch["records"].as_array().unwrap();
    assert!(
        records
            .iter()
            .all(|r| r["allowed"] == false && r["caller"] == "agent"),
        "{batch}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["seq"] == decision && r["action"] == "container.create"),
        "decision {decision} not in {batch}"
    );
    // Tampering with the body, or replaying it an hour later, fails.
    let mut tampered = body.clone();
    let at = tampered.iter().position(|&b| b == b'a').unwrap();
    tampered[at] = b'b';
    let check = |body: &[u8], now: SystemTime| {
        portcullis::notify::verify(
            SECRET.as_bytes(),
            &signature,
            body,
            now,
            Duration::from_secs(300),
        )
    };
    assert_eq!(
        check(&tampered, SystemTime::now()),
        Err(portcullis::notify::VerifyError::BadSignature)
    );
    assert!(check(&body, SystemTime::now() + Duration::from_secs(3600)).is_err());
}

#[test]
fn webhooks_need_a_secret() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--listen",
            "unix:///nonexistent/x.sock",
            "--notify-webhook",
            "http://127.0.0.1:9/x",
        ])
        .env_remove("PORTCULLIS_NOTIFY_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--notify-secret"), "{}", stderr(&out));
}

//! The file API against `docker cp`, both through portcullis, as a ratio.
//!
//! Issue 5's target: writing and reading a 1 MiB file through
//! `PUT …/files/write` / `GET …/files/read` costs at most 1.2× what `docker cp`
//! of the same file costs through the same proxy. `docker cp` is the real CLI
//! (a process per copy, as a user would run it); the raw archive API
//! (`PUT`/`GET /containers/{id}/archive` from an in-process client) is printed
//! too, so the CLI's own start-up cost can be told apart from the proxy path,
//! and so is a write that creates its file rather than replacing one.
//!
//! `cargo bench --bench files` starts its own `portcullis serve` (this build's
//! binary) on a temporary admin socket, creates a busybox fixture container,
//! measures, and removes both. Without `--bench` (as `cargo test --benches`
//! runs it) it does one tiny round only. Without a Docker daemon it prints
//! SKIP and exits 0. Env: PORTCULLIS_BENCH_ROUNDS (default 15).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use base64::Engine;
use common::support::{daemon, image, request, Serve, ServeCmd, IMAGE};
use rand::RngCore;
use serde_json::{json, Value};

const DIR: &str = "/app/bench";

fn docker(host: &str, args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(args)
        .output()
        .expect("run docker")
}

fn must(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The proxy and the container, removed on drop (also on panic).
struct Fixture {
    _proxy: Serve,
    container: String,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = docker(
            "unix:///var/run/docker.sock",
            &["rm", "-f", &self.container],
        );
    }
}

fn start(dir: &Path) -> (Serve, PathBuf) {
    let socket = dir.join("portcullis.sock");
    let serve = ServeCmd::at(&socket, &dir.join("data"), &dir.join("serve.log")).start();
    (serve, socket)
}

/// One HTTP/1.1 request over a fresh connection; status and (de-chunked) body.
fn http(
    socket: &Path,
    method: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let answer = request(method, target)
        .header("Content-Type", content_type)
        .body(body)
        .send(socket);
    (answer.status, answer.body)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if let Err(why) = daemon::answers() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {why}"
        );
        println!("SKIP: {why}");
        return;
    }
    let direct = "unix:///var/run/docker.sock";
    image();
    let (size, rounds) = if full {
        let rounds = std::env::var("PORTCULLIS_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(15);
        (1 << 20, rounds)
    } else {
        (16 << 10, 1)
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, socket) = start(dir.path());
    let container = format!("portcullis-bench-files-{:08x}", rand::random::<u32>());
    let fx = Fixture {
        _proxy: proxy,
        container: container.clone(),
        _dir: dir,
    };
    must(
        docker(
            direct,
            &["run", "-d", "--name", &container, IMAGE, "sleep", "3600"],
        ),
        "docker run",
    );
    must(
        docker(direct, &["exec", &container, "mkdir", "-p", DIR]),
        "mkdir",
    );
    let host = format!("unix://{}", socket.display());

    let mut data = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut data);
    let local = fx._dir.path().join("payload.bin");
    std::fs::write(&local, &data).expect("write payload");
    let local_s = local.to_str().unwrap().to_string();
    let back = fx._dir.path().join("back.bin");
    let back_s = back.to_str().unwrap().to_string();

    // The file API. The content is binary, so it travels as base64 (the API's own cost).
    let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
    let api_path = format!("{DIR}/api.bin");
    let write_body = serde_json::to_vec(
        &json!({"path": api_path, "content": encoded, "encoding": "base64", "mode": "0644"}),
    )
    .unwrap();
    let write_target = format!("/api/v1/containers/{container}/files/write");
    let read_target =
        format!("/api/v1/containers/{container}/files/read?path=%2Fapp%2Fbench%2Fapi.bin");
    let api_write = || {
        let (status, body) = http(
            &socket,
            "PUT",
            &write_target,
            "application/json",
            &write_body,
        );
        assert_eq!(
            status,
            200,
            "file API write: {}",
            String::from_utf8_lossy(&body)
        );
    };
    let api_read = || {
        let (status, body) = http(&socket, "GET", &read_target, "application/json", b"");
        assert_eq!(
            status,
            200,
            "file API read: {}",
            String::from_utf8_lossy(&body)
        );
        body
    };
    api_write();
    let answer: Value = serde_json::from_slice(&api_read()).expect("read answer is JSON");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(answer["content"].as_str().expect("content"))
        .expect("base64");
    assert_eq!(decoded, data, "the file API returned other bytes");

    // docker cp through the proxy, both directions.
    let cp_in_dest = format!("{container}:{DIR}/payload.bin");
    let cp_out_src = cp_in_dest.clone();
    let cp_in = || {
        must(
            docker(&host, &["cp", &local_s, &cp_in_dest]),
            "docker cp in",
        )
    };
    let cp_out = || {
        must(
            docker(&host, &["cp", &cp_out_src, &back_s]),
            "docker cp out",
        )
    };
    cp_in();
    cp_out();
    assert_eq!(
        std::fs::read(&back).expect("copied back"),
        data,
        "docker cp returned other bytes"
    );

    // The raw archive API through the proxy (no CLI start-up): a one-entry tar.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "raw.bin", data.as_slice())
        .expect("tar");
    let tar_bytes = builder.into_inner().expect("tar");
    let put_target = format!("/containers/{container}/archive?path=%2Fapp%2Fbench");
    let get_target = format!("/containers/{container}/archive?path=%2Fapp%2Fbench%2Fraw.bin");
    let raw_put = || {
        let (status, body) = http(&socket, "PUT", &put_target, "application/x-tar", &tar_bytes);
        assert_eq!(
            status,
            200,
            "archive PUT: {}",
            String::from_utf8_lossy(&body)
        );
    };
    let raw_get = || {
        let (status, body) = http(&socket, "GET", &get_target, "application/json", b"");
        assert_eq!(status, 200, "archive GET");
        body
    };
    raw_put();
    assert!(
        raw_get().len() > size,
        "the archive GET returned less than the file"
    );

    // A write that creates the file (no existing file to stat past).
    let mut fresh = 0u32;
    let api_write_new = || {
        fresh += 1;
        let request = json!({"path": format!("{DIR}/new{fresh}.bin"), "content": encoded, "encoding": "base64", "mode": "0644"});
        let (status, body) = http(
            &socket,
            "PUT",
            &write_target,
            "application/json",
            &serde_json::to_vec(&request).unwrap(),
        );
        assert_eq!(
            status,
            200,
            "file API write (new file): {}",
            String::from_utf8_lossy(&body)
        );
    };

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let t_api_w = time(rounds, api_write);
    let t_api_new = time(rounds, api_write_new);
    let t_cp_in = time(rounds, cp_in);
    let t_raw_put = time(rounds, raw_put);
    let t_api_r = time(rounds, api_read);
    let t_cp_out = time(rounds, cp_out);
    let t_raw_get = time(rounds, raw_get);
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!(
        "files: {} KiB, {rounds} rounds each, medians (mode: {})",
        size >> 10,
        if full { "bench" } else { "quick" }
    );
    println!("  write: file API {:8.1} ms   docker cp in  {:8.1} ms   ratio API/cp {:.2}x   (raw archive PUT {:.1} ms)", ms(t_api_w), ms(t_cp_in), ms(t_api_w) / ms(t_cp_in), ms(t_raw_put));
    println!(
        "         file API creating a new file {:.1} ms (ratio {:.2}x)",
        ms(t_api_new),
        ms(t_api_new) / ms(t_cp_in)
    );
    println!("  read:  file API {:8.1} ms   docker cp out {:8.1} ms   ratio API/cp {:.2}x   (raw archive GET {:.1} ms)", ms(t_api_r), ms(t_cp_out), ms(t_api_r) / ms(t_cp_out), ms(t_raw_get));
    println!(
        "  target: ratio <= 1.2x; load average before {} after {}",
        load.trim(),
        load_after.trim()
    );
    drop(fx);
}

//! The file API against the real Docker engine, with the offline busybox fixture.
//!
//! Ignored when no daemon answers, except with `CI=true`, where a missing
//! daemon is a failure (tests/common). Every container is force-removed by a guard, even
//! when an assertion fails.

mod common;

use std::process::Command;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptions;
use bollard::Docker;
use common::{engine, image, IMAGE};
use http::StatusCode;
use portcullis::files::{inspect_upload, ContainerFs, FileError, FileKind, WriteRequest};

const DIR: &str = "/app/config/instructions";
const FILE: &str = "/app/config/instructions/CLAUDE.md";

/// Force-removes the container on drop (sync, so it also runs while unwinding).
struct ContainerGuard {
    name: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// The daemon, once the shared skip rule (tests/common) says one answers.
fn docker() -> Docker {
    engine();
    Docker::connect_with_local_defaults().expect("a Docker client for the daemon that answered")
}

async fn start_container(docker: &Docker) -> ContainerGuard {
    let name = format!("portcullis-files-test-{:016x}", rand::random::<u64>());
    let guard = ContainerGuard { name: name.clone() };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(IMAGE.to_string()),
                cmd: Some(vec!["sleep".to_string(), "600".to_string()]),
                ..Default::default()
            },
        )
        .await
        .expect("create container");
    docker
        .start_container(&name, None)
        .await
        .expect("start container");
    guard
}

/// `docker exec` a command (argv) and return its stdout; panics on failure.
fn exec(container: &str, argv: &[&str]) -> String {
    let out = Command::new("docker")
        .arg("exec")
        .arg(container)
        .args(argv)
        .output()
        .expect("run docker exec");
    assert!(
        out.status.success(),
        "docker exec {argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write_req(
    path: &str,
    content: &str,
    encoding: &str,
    mode: &str,
    create_dirs: bool,
) -> WriteRequest {
    WriteRequest {
        path: path.to_string(),
        content: content.to_string(),
        encoding: encoding.to_string(),
        mode: mode.to_string(),
        create_dirs,
    }
}

fn status(err: FileError) -> StatusCode {
    err.status()
}

#[tokio::test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
async fn file_api_against_the_real_engine() {
    let docker = docker();
    image();
    let guard = start_container(&docker).await;
    let c = guard.name.as_str();
    let fs = ContainerFs::new(docker.clone());

    // UTF-8 round trip.
    let text = "# Agent Instructions\n\nYou are an ideation agent. ✓\n";
    let written = fs
        .write(c, &write_req(FILE, text, "utf-8", "0644", false))
        .await
        .expect("write utf-8");
    assert!(written.created);
    assert_eq!(written.resolved_path, FILE);
    assert_eq!(written.size, text.len() as u64);
    let read = fs.read(c, FILE, 1 << 20).await.expect("read utf-8");
    assert_eq!(read.encoding, "utf-8");
    assert_eq!(read.content, text);
    assert_eq!(read.mode, "0644");
    assert_eq!(read.size, text.len() as u64);
    assert!(read.modified_at.is_some());
    assert_eq!(exec(c, &["cat", FILE]), text.trim());

    // Binary round trip replaces the file; like docker cp, root owns it after.
    exec(c, &["chown", "1234:4321", FILE]);
    let binary: Vec<u8> = (0u8..=255).chain([0xff, 0xfe, 0x00]).collect();
    let encoded = base64_encode(&binary);
    let written = fs
        .write(c, &write_req(FILE, &encoded, "base64", "0600", false))
        .await
        .expect("write binary");
    assert!(!written.created);
    let read = fs.read(c, FILE, 1 << 20).await.expect("read binary");
    assert_eq!(read.encoding, "base64");
    assert_eq!(read.bytes().unwrap(), binary);
    assert_eq!(read.mode, "0600");
    assert_eq!(exec(c, &["stat", "-c", "%u:%g %a", FILE]), "0:0 600");

    // Size limit.
    let err = fs.read(c, FILE, 10).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains("file larger than limit"), "{err}");

    // Listing: direct children with size and mode.
    exec(
        c,
        &["mkdir", "-p", "/app/config/instructions/prompts/deeper"],
    );
    exec(
        c,
        &["touch", "/app/config/instructions/prompts/deeper/x.md"],
    );
    let listing = fs.list(c, DIR).await.expect("list");
    assert_eq!(listing.path, DIR);
    let names: Vec<&str> = listing.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["CLAUDE.md", "prompts"]);
    let claude = &listing.entries[0];
    assert_eq!(claude.kind, FileKind::File);
    assert_eq!(claude.size, binary.len() as u64);
    assert_eq!(claude.mode, "0600");
    assert_eq!(listing.entries[1].kind, FileKind::Directory);
    assert_eq!(
        status(fs.list(c, FILE).await.unwrap_err()),
        StatusCode::CONFLICT
    );

    // createDirs builds the missing chain; without it the parent must exist.
    let nested = "/app/config/new/a/b/settings.json";
    let err = fs
        .write(c, &write_req(nested, "{}", "utf-8", "0644", false))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::NOT_FOUND, "{err}");
    let written = fs
        .write(c, &write_req(nested, "{\"a\":1}", "utf-8", "0640", true))
        .await
        .expect("write with createDirs");
    assert_eq!(
        written.created_dirs,
        [
            "/app/config/new",
            "/app/config/new/a",
            "/app/config/new/a/b"
        ]
    );
    assert_eq!(written.resolved_path, nested);
    assert_eq!(fs.read(c, nested, 1024).await.unwrap().content, "{\"a\":1}");
    assert_eq!(exec(c, &["stat", "-c", "%a", "/app/config/new/a"]), "755");
    let sub = fs.list(c, "/app/config/new/a").await.unwrap();
    assert_eq!(sub.entries.len(), 1);
    assert_eq!(sub.entries[0].name, "b");
    assert_eq!(sub.entries[0].kind, FileKind::Directory);
    // A file as parent is a conflict; a directory as target too.
    let err = fs
        .write(
            c,
            &write_req(&format!("{FILE}/x"), "x", "utf-8", "0644", true),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::CONFLICT, "{err}");
    let err = fs
        .write(
            c,
            &write_req("/app/config/new", "x", "utf-8", "0644", false),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::CONFLICT, "{err}");
    assert_eq!(
        exec(c, &["ls", "/app/config/new/a"]),
        "b",
        "directory untouched"
    );
    // Bad input is refused before the daemon is asked.
    for bad in [
        write_req("relative/x", "x", "utf-8", "0644", false),
        write_req("/app/../etc/x", "x", "utf-8", "0644", false),
        write_req("/app/x", "!!", "base64", "0644", false),
        write_req("/app/x", "x", "utf-8", "4755", false),
    ] {
        let err = fs.write(c, &bad).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad:?}: {err}");
    }

    // Symlinks are followed inside the container: absolute and relative targets.
    exec(c, &["ln", "-s", "/etc", "/app/config/instructions/link"]);
    let resolved = fs
        .resolve(c, "/app/config/instructions/link/passwd")
        .await
        .expect("resolve");
    assert_eq!(resolved.requested, "/app/config/instructions/link/passwd");
    assert_eq!(resolved.path, "/etc/passwd");
    assert_eq!(resolved.hops, 1);
    assert_eq!(resolved.stat.as_ref().map(|s| s.kind), Some(FileKind::File));
    exec(c, &["ln", "-s", "../../etc", "/app/config/rel"]);
    let resolved = fs.resolve(c, "/app/config/rel/shadow").await.unwrap();
    assert_eq!(resolved.path, "/etc/shadow");
    // A missing tail is kept as given below the resolved prefix.
    let resolved = fs
        .resolve(c, "/app/config/instructions/link/nope/deeper")
        .await
        .unwrap();
    assert_eq!(resolved.path, "/etc/nope/deeper");
    assert_eq!(resolved.stat, None);
    assert_eq!(resolved.deepest_existing, "/etc");
    assert_eq!(resolved.missing, ["nope", "deeper"]);
    // The policy context carries both paths.
    let ctx = fs
        .file_context(c, "/app/config/instructions//link/passwd")
        .await
        .unwrap();
    assert_eq!(ctx.path, "/app/config/instructions/link/passwd");
    assert_eq!(ctx.resolved_path, "/etc/passwd");
    assert_eq!(ctx.mount, None);
    // Reading the link itself is refused; writing onto a symlink too.
    assert_eq!(
        status(
            fs.read(c, "/app/config/instructions/link", 1024)
                .await
                .unwrap_err()
        ),
        StatusCode::CONFLICT
    );
    exec(c, &["ln", "-s", "/etc/passwd", "/app/config/pw"]);
    let err = fs
        .write(c, &write_req("/app/config/pw", "x", "utf-8", "0644", false))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::CONFLICT, "{err}");
    assert!(exec(c, &["cat", "/etc/passwd"]).starts_with("root:x:0:0"));
    // Writing through a symlinked parent lands where the link points.
    let written = fs
        .write(
            c,
            &write_req("/app/config/rel/through.txt", "t", "utf-8", "0644", false),
        )
        .await
        .unwrap();
    assert_eq!(written.resolved_path, "/etc/through.txt");
    assert_eq!(exec(c, &["cat", "/etc/through.txt"]), "t");
    // docker cp uploads: entries below an existing symlink land where it points.
    exec(c, &["ln", "-s", "/etc", "/app/config/sym"]);
    let mut builder = tar::Builder::new(Vec::new());
    for name in ["plain/x.txt", "sym/evil", "top.txt"] {
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, &b"x"[..]).unwrap();
    }
    let body = builder.into_inner().unwrap();
    let inspection = inspect_upload(&body, "/app/config").unwrap();
    assert_eq!(
        inspection.paths(),
        [
            "/app/config/plain/x.txt",
            "/app/config/sym/evil",
            "/app/config/top.txt"
        ]
    );
    assert_eq!(
        fs.resolve_upload(c, &inspection).await.unwrap(),
        [
            "/app/config/plain/x.txt",
            "/etc/evil",
            "/app/config/top.txt"
        ]
    );

    // Listing the root works too (every top-level directory of the image).
    let root = fs.list(c, "/").await.expect("list /");
    for dir in ["app", "bin", "etc"] {
        let entry = root.entries.iter().find(|e| e.name == dir);
        assert_eq!(entry.map(|e| e.kind), Some(FileKind::Directory), "{dir}");
    }

    // Symlink loops end in an error, not a hang.
    exec(c, &["ln", "-s", "/app/loop2", "/app/loop1"]);
    exec(c, &["ln", "-s", "/app/loop1", "/app/loop2"]);
    // (moby itself fails the stat of a looping link with a 500; our own hop limit
    // is unit-tested.)
    let err = fs.resolve(c, "/app/loop1/x").await.unwrap_err();
    assert!(
        matches!(
            err.status(),
            StatusCode::BAD_GATEWAY | StatusCode::BAD_REQUEST
        ),
        "{err:?}"
    );

    // Missing file, directory, missing container.
    let err = fs.read(c, "/app/config/nope.md", 1024).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::NOT_FOUND, "{err}");
    assert!(matches!(err, FileError::NotFound(_)), "{err:?}");
    assert_eq!(
        status(fs.read(c, DIR, 1024).await.unwrap_err()),
        StatusCode::CONFLICT
    );
    assert_eq!(fs.stat(c, "/app/config/nope.md").await.unwrap(), None);
    let err = fs
        .stat("portcullis-no-such-container-xyz", "/etc")
        .await
        .unwrap_err();
    assert!(matches!(err, FileError::ContainerNotFound(_)), "{err:?}");
    let err = fs
        .read("portcullis-no-such-container-xyz", "/etc/passwd", 10)
        .await
        .unwrap_err();
    assert!(matches!(err, FileError::ContainerNotFound(_)), "{err:?}");

    // Delete.
    fs.delete(c, nested).await.expect("delete");
    assert_eq!(fs.stat(c, nested).await.unwrap(), None);
    assert_eq!(
        status(fs.delete(c, nested).await.unwrap_err()),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(fs.delete(c, "/app/config/new").await.unwrap_err()),
        StatusCode::CONFLICT
    );
    // A container without rm gets the documented error.
    exec(c, &["rm", "/bin/rm"]);
    let err = fs.delete(c, FILE).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::CONFLICT, "{err}");
    assert!(err.to_string().contains("no usable rm"), "{err}");
    assert!(fs.stat(c, FILE).await.unwrap().is_some());

    // A stopped container: reads still work, delete explains why it cannot.
    docker.kill_container(c, None).await.expect("kill");
    let mut stopped = false;
    for _ in 0..50 {
        let state = docker
            .inspect_container(c, None)
            .await
            .unwrap()
            .state
            .unwrap();
        if state.running != Some(true) {
            stopped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(stopped, "container did not stop");
    assert_eq!(
        fs.read(c, FILE, 1 << 20).await.unwrap().bytes().unwrap(),
        binary
    );
    let err = fs.delete(c, FILE).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::CONFLICT);
    assert_eq!(
        err.to_string(),
        "container is not running; delete needs the container's own rm"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

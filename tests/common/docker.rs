//! The Docker side of the engine tests: the fixture images (built offline,
//! once per test binary), the docker CLI straight at the daemon, container
//! cleanup, and reading a command's output.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const IMAGE: &str = "portcullis-test/busybox:latest";

/// Build the busybox fixture image once per test binary.
pub fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let have = direct(&["image", "inspect", IMAGE]).status.success();
        if !have {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/build-image.sh");
            let out = Command::new("bash")
                .arg(script)
                .arg(IMAGE)
                .output()
                .expect("run build-image.sh");
            assert!(
                out.status.success(),
                "building the fixture image failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    IMAGE
}

/// The top-level Dockerfile built offline (once per test binary): the
/// builder is the busybox fixture with the test binary as `PREBUILT`, the
/// runtime a scratch base holding its libraries.
pub fn portcullis_image() -> &'static str {
    const TAG: &str = "portcullis-test/portcullis:latest";
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        image();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let binary = Path::new(env!("CARGO_BIN_EXE_portcullis"));
        let prebuilt = binary.strip_prefix(root).unwrap_or_else(|_| {
            panic!(
                "the test binary {} is outside the build context {}",
                binary.display(),
                root.display()
            )
        });
        let base = Command::new("bash")
            .arg(root.join("fixtures/build-offline-bases.sh"))
            .arg(binary)
            .output()
            .expect("run build-offline-bases.sh");
        let base = ok(&base).trim().to_string();
        let built = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .current_dir(root)
            .args(["build", "-q", "-t", TAG])
            .args(["--build-arg", &format!("BUILDER_IMAGE={IMAGE}")])
            .args(["--build-arg", &format!("RUNTIME_IMAGE={base}")])
            .args(["--build-arg", &format!("PREBUILT={}", prebuilt.display())])
            .arg(".")
            .output()
            .expect("run docker build");
        ok(&built);
    });
    TAG
}

/// The busybox fixture plus this machine's (static) docker CLI: a stand-in
/// for `docker:cli`, which cannot be pulled here.
pub fn docker_cli_image() -> &'static str {
    const TAG: &str = "portcullis-test/docker-cli:latest";
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let ctx = tempfile::tempdir().unwrap();
        let docker = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v docker"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        std::fs::copy(docker.trim(), ctx.path().join("docker")).unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM {}\nCOPY docker /usr/local/bin/docker\n", image()),
        )
        .unwrap();
        let built = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", TAG])
            .arg(ctx.path())
            .output()
            .unwrap();
        ok(&built);
    });
    TAG
}

/// The docker CLI straight at the daemon.
pub fn direct(args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .args(args)
        .output()
        .expect("run docker")
}

/// Containers removed when the test ends, pass or fail.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = direct(&["rm", "-f", name]);
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed: stdout={} stderr={}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// The docker CLI failed with portcullis's refusal, saying `why`.
#[track_caller]
pub fn refused(out: &Output, why: &str) {
    assert!(
        !out.status.success(),
        "expected a refusal, got success: {}",
        stdout(out)
    );
    let err = stderr(out);
    assert!(
        err.contains("Error response from daemon: portcullis: "),
        "not a portcullis refusal: {err}"
    );
    assert!(err.contains(why), "refusal does not say {why:?}: {err}");
}

/// A tag built offline on the fixture image, with `lines` after its `FROM`
/// (a `CMD`, a `HEALTHCHECK`, a `LABEL`); built again each call, so a test
/// gets exactly the lines it names.
pub fn derived_image(tag: &str, lines: &[&str]) -> String {
    derived_image_from(image(), tag, lines)
}

/// A tag built offline on `base` (an image already here), with `lines` after
/// its `FROM`.
pub fn derived_image_from(base: &str, tag: &str, lines: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let dockerfile = format!("FROM {base}\n{}\n", lines.join("\n"));
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    let out = Command::new("docker")
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .output()
        .expect("run docker build");
    ok(&out);
    tag.to_string()
}

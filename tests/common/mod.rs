//! Shared harness for tests against the real Docker engine and the real
//! docker CLI: start `portcullis serve` on a temporary socket, run docker
//! commands through it and directly, clean up containers.
//!
//! Without a Docker daemon these tests skip with a message, except under
//! `CI=true`, where a missing daemon is a failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "portcullis-test/busybox:latest";

/// True when a daemon answers; panics under CI=true when none does.
pub fn engine() -> bool {
    static UP: OnceLock<bool> = OnceLock::new();
    let up = *UP.get_or_init(|| {
        Command::new("docker")
            .args([
                "-H",
                "unix:///var/run/docker.sock",
                "info",
                "--format",
                "{{.ServerVersion}}",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    if !up {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but no Docker daemon answers at /var/run/docker.sock");
        }
        eprintln!("SKIP: no Docker daemon answers at /var/run/docker.sock");
    }
    up
}

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

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ std::process::id() as u128);
    h.finish() as u32
}

/// The docker CLI straight at the daemon.
pub fn direct(args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .args(args)
        .output()
        .expect("run docker")
}

/// A running `portcullis serve`, killed on drop.
pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config_dir: PathBuf,
    child: Child,
}

impl Proxy {
    /// Start with one admin socket plus any extra arguments.
    pub fn start(extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("portcullis.sock");
        let data = dir.path().join("data");
        let config_dir = dir.path().join("docker-config");
        std::fs::create_dir_all(&config_dir).unwrap();
        let listen = format!("unix://{}", socket.display());
        let mut args = vec!["serve", "--listen", &listen, "--data-dir"];
        let data_s = data.to_string_lossy().to_string();
        args.push(&data_s);
        args.extend_from_slice(extra);
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(&args)
            .env("PORTCULLIS_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn portcullis");
        let p = Proxy {
            dir,
            socket,
            config_dir,
            child,
        };
        p.wait_for_socket(&p.socket.clone());
        p
    }

    pub fn wait_for_socket(&self, path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "portcullis did not listen on {} in time; log:\n{}",
            path.display(),
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The docker CLI through the proxy's admin socket.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_at(&self.host(), args)
    }

    /// The docker CLI through any listener of this proxy.
    pub fn docker_at(&self, host: &str, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", host)
            .env("DOCKER_CONFIG", &self.config_dir)
            .args(args)
            .output()
            .expect("run docker")
    }

    /// The portcullis CLI against this proxy.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .env("PORTCULLIS_HOST", self.host())
            .args(args)
            .output()
            .expect("run portcullis")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
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

/// A proxy with an admin socket and a socket pinned to `caller`: the proxy,
/// the pinned socket's DOCKER_HOST, and the folder that holds it.
pub fn pinned_proxy(caller: &str, extra: &[&str]) -> (Proxy, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join(format!("{caller}.sock"));
    let spec = format!("unix://{}?caller={caller}", sock.display());
    let mut args = vec!["--listen", spec.as_str()];
    args.extend_from_slice(extra);
    let p = Proxy::start(&args);
    p.wait_for_socket(&sock);
    (p, format!("unix://{}", sock.display()), dir)
}

/// `portcullis trust create --set …` through the proxy; the new id.
pub fn trust_create(p: &Proxy, sets: &[&str]) -> String {
    let mut args = vec!["trust", "create"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let out = ok(&p.cli(&args));
    let v: serde_json::Value = serde_json::from_str(&out).expect("trust create prints JSON");
    v["id"].as_str().expect("an id").to_string()
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

/// Ask `f` again every 50 ms until it says yes or `limit` has passed: for
/// changes (trust, policy) that take effect within a bound, not at once.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! The one way tests and benches start `portcullis serve`: [`ServeCmd`] says
//! what to run (listener, data dir, upstream, flags, environment, log file),
//! [`Serve`] is the running process (killed on drop), and [`Proxy`] is the
//! common case, a throwaway server in its own temporary directory.
//! Std and tempfile only, so the benches can include this file by path.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// How long a server may take to listen, or to exit when expected to.
pub const START_LIMIT: Duration = Duration::from_secs(30);

/// What to start: `portcullis serve` and its flags, in the order given.
pub struct ServeCmd {
    args: Vec<OsString>,
    socket: Option<PathBuf>,
    log: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    config_dir: Option<PathBuf>,
    /// Another build of portcullis (the benches compare against a baseline).
    binary: Option<PathBuf>,
}

impl ServeCmd {
    /// `serve` with no flags yet, logging at info; without [`ServeCmd::log`]
    /// its output goes to this process's stderr.
    pub fn new() -> ServeCmd {
        ServeCmd {
            args: vec!["serve".into()],
            socket: None,
            log: None,
            env: vec![("PORTCULLIS_LOG".into(), "info".into())],
            config_dir: None,
            binary: None,
        }
    }

    /// Listening on `socket`, state in `data`, output to `log`.
    pub fn at(socket: &Path, data: &Path, log: &Path) -> ServeCmd {
        ServeCmd::new().listen(socket).data(data).log(log)
    }

    /// In `dir`: data in `{name}-data` (kept across restarts under the same
    /// name), output in `{name}.log`; no listener yet.
    pub fn named(dir: &Path, name: &str) -> ServeCmd {
        ServeCmd::new()
            .data(&dir.join(format!("{name}-data")))
            .log(&dir.join(format!("{name}.log")))
    }

    /// `--listen unix://SOCKET`; the first one is the socket [`ServeCmd::start`]
    /// waits for and [`Serve::host`] names.
    pub fn listen(mut self, socket: &Path) -> ServeCmd {
        self.args.push("--listen".into());
        self.args
            .push(format!("unix://{}", socket.display()).into());
        self.socket.get_or_insert_with(|| socket.to_path_buf());
        self
    }

    /// The socket to wait for when the listeners come from elsewhere (a
    /// config file), instead of the first `--listen`.
    pub fn socket(mut self, socket: &Path) -> ServeCmd {
        self.socket = Some(socket.to_path_buf());
        self
    }

    /// `--data-dir DIR`.
    pub fn data(self, dir: &Path) -> ServeCmd {
        self.arg("--data-dir").arg(dir)
    }

    /// `--upstream unix://SOCKET`.
    pub fn upstream(self, socket: &Path) -> ServeCmd {
        self.arg("--upstream")
            .arg(format!("unix://{}", socket.display()))
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> ServeCmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: &[S]) -> ServeCmd {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// An environment variable (as an operator's unit file would set it).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ServeCmd {
        self.env.push((key.into(), value.into()));
        self
    }

    /// stdout and stderr to `path` (created afresh).
    pub fn log(mut self, path: &Path) -> ServeCmd {
        self.log = Some(path.to_path_buf());
        self
    }

    /// DOCKER_CONFIG for [`Serve::docker`] (a clean docker CLI configuration).
    pub fn docker_config(mut self, dir: &Path) -> ServeCmd {
        self.config_dir = Some(dir.to_path_buf());
        self
    }

    /// Run `binary` instead of this build's portcullis.
    pub fn binary(mut self, binary: &Path) -> ServeCmd {
        self.binary = Some(binary.to_path_buf());
        self
    }

    /// The command, not yet run.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.binary.as_deref().unwrap_or(Path::new(BIN)));
        cmd.args(&self.args).stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        match &self.log {
            Some(path) => {
                let out = std::fs::File::create(path)
                    .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
                cmd.stdout(out.try_clone().expect("clone log file"));
                cmd.stderr(out);
            }
            None => {
                cmd.stdout(Stdio::null());
            }
        }
        cmd
    }

    /// Start without waiting for the socket.
    pub fn spawn(self) -> Serve {
        let child = self.command().spawn().expect("spawn portcullis serve");
        Serve {
            // In a mutex so that waiting for a socket, which watches for an
            // early exit, needs no `mut`.
            child: Mutex::new(child),
            socket: self.socket.unwrap_or_default(),
            log: self.log,
            config_dir: self.config_dir,
        }
    }

    /// Start and wait until the socket accepts connections.
    pub fn start(self) -> Serve {
        let serve = self.spawn();
        let socket = serve.socket.clone();
        serve.wait_for_socket(&socket);
        serve
    }

    /// Run expecting the server to exit by itself (within [`START_LIMIT`]):
    /// its status and log.
    pub fn run_to_exit(self) -> (ExitStatus, String) {
        let mut serve = self.spawn();
        match serve.exit_within(START_LIMIT) {
            Some(status) => (status, serve.log()),
            None => panic!("portcullis kept running; log:\n{}", serve.log()),
        }
    }
}

impl Default for ServeCmd {
    fn default() -> Self {
        ServeCmd::new()
    }
}

/// A running `portcullis serve`, SIGKILLed on drop.
pub struct Serve {
    child: Mutex<Child>,
    /// The socket the server was started on (see [`ServeCmd::listen`]).
    pub socket: PathBuf,
    log: Option<PathBuf>,
    config_dir: Option<PathBuf>,
}

impl Serve {
    /// Wait until `path` accepts connections; panics with the log if the
    /// server exits first or does not listen in time.
    pub fn wait_for_socket(&self, path: &Path) {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                panic!(
                    "portcullis exited during startup ({status}); log:\n{}",
                    self.log()
                );
            }
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

    /// What the server wrote so far (empty when it logs to stderr).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The docker CLI through the server's socket.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_at(&self.host(), args)
    }

    /// The docker CLI through any listener of this server.
    pub fn docker_at(&self, host: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", host);
        if let Some(dir) = &self.config_dir {
            cmd.env("DOCKER_CONFIG", dir);
        }
        cmd.args(args).output().expect("run docker")
    }

    /// The portcullis CLI against this server's socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_at(&self.socket, args)
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.child().try_wait().expect("try_wait")
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        // A panic elsewhere while holding the lock leaves the child usable.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `kill -NAME` (TERM, INT, …).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// The exit status, if the process ends within `within`.
    pub fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (std's `Child::kill` on unix) and reap.
    pub fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The portcullis CLI against the server on `socket` (no token from the
/// environment).
pub fn cli_at(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("PORTCULLIS_HOST", format!("unix://{}", socket.display()))
        .env_remove("PORTCULLIS_TOKEN")
        .args(args)
        .output()
        .expect("run portcullis")
}

/// A `portcullis serve` in its own temporary directory (socket
/// `portcullis.sock`, data in `data`, log `serve.log`, a clean docker CLI
/// configuration in `docker-config`), removed with it.
pub struct Proxy {
    serve: Serve,
    pub config_dir: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Proxy {
    /// Start with one admin socket plus any extra arguments.
    pub fn start(extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_dir = dir.path().join("docker-config");
        std::fs::create_dir_all(&config_dir).expect("docker config dir");
        let serve = ServeCmd::at(
            &dir.path().join("portcullis.sock"),
            &dir.path().join("data"),
            &dir.path().join("serve.log"),
        )
        .args(extra)
        .docker_config(&config_dir)
        .start();
        Proxy {
            serve,
            config_dir,
            dir,
        }
    }
}

impl std::ops::Deref for Proxy {
    type Target = Serve;
    fn deref(&self) -> &Serve {
        &self.serve
    }
}

impl std::ops::DerefMut for Proxy {
    fn deref_mut(&mut self) -> &mut Serve {
        &mut self.serve
    }
}

/// Wait until a unix socket accepts connections (a server not started
/// here: a container, a config file's listener); `why` explains a timeout.
pub fn wait_for_unix(path: &Path, limit: Duration, why: impl Fn() -> String) {
    wait_for(
        limit,
        || std::os::unix::net::UnixStream::connect(path).is_ok(),
        || format!("nothing listens on {}: {}", path.display(), why()),
    );
}

/// Wait until 127.0.0.1:`port` accepts connections.
pub fn wait_for_tcp(port: u16, limit: Duration, why: impl Fn() -> String) {
    wait_for(
        limit,
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        || format!("nothing listens on 127.0.0.1:{port}: {}", why()),
    );
}

fn wait_for(limit: Duration, mut up: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !up() {
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

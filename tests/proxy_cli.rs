//! Issue: the transparent proxy core. The real docker CLI through portcullis
//! must behave as it does straight at the daemon.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Run the same docker command directly and through the proxy; both outputs.
fn both(p: &Proxy, args: &[&str]) -> (std::process::Output, std::process::Output) {
    (direct(args), p.docker(args))
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn version_info_ps_match_the_daemon() {
    engine();
    let img = image();
    let p = Proxy::start(&[]);
    let (d, x) = both(&p, &["version"]);
    assert_eq!(stdout(&d), stdout(&x));
    assert_eq!(d.status.code(), x.status.code());

    let fmt = "{{.ServerVersion}} {{.Driver}} {{.OSType}} {{.Name}}";
    let (d, x) = both(&p, &["info", "--format", fmt]);
    assert_eq!(ok(&d), ok(&x));
    assert!(p.docker(&["info"]).status.success());

    let label = unique("pc-ps");
    let names = [unique("ps-a"), unique("ps-b")];
    let _c = Cleanup(names.to_vec());
    for n in &names {
        ok(&p.docker(&[
            "create",
            "--name",
            n,
            "--label",
            &format!("suite={label}"),
            img,
            "true",
        ]));
    }
    let filter = format!("label=suite={label}");
    let args = [
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.Image}} {{.Status}}",
    ];
    let (d, x) = both(&p, &args);
    assert_eq!(ok(&d), ok(&x));
    assert_eq!(stdout(&x).lines().count(), 2);
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn run_exec_logs_attach_wait_kill_rm() {
    engine();
    let img = image();
    let p = Proxy::start(&[]);

    let (d, x) = both(&p, &["run", "--rm", img, "echo", "hi"]);
    assert_eq!((stdout(&x).as_str(), x.status.code()), ("hi\n", Some(0)));
    assert_eq!(stdout(&d), stdout(&x));
    let (d, x) = both(&p, &["run", "--rm", img, "sh", "-c", "echo out; exit 3"]);
    assert_eq!(d.status.code(), Some(3));
    assert_eq!(x.status.code(), Some(3));
    assert_eq!(stdout(&x), "out\n");

    let name = unique("run-d");
    let _c = Cleanup(vec![name.clone()]);
    let id = ok(&p.docker(&["run", "-d", "--name", &name, img, "sleep", "300"]));
    assert_eq!(id.trim().len(), 64);

    // exec -i: stdin reaches the process, and its end (half-close) ends cat.
    let mut child = Command::new("docker")
        .env("DOCKER_HOST", p.host())
        .args(["exec", "-i", &name, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"data\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("data\n", Some(0))
    );

    // exec -t under a pty.
    let cmd = format!(
        "DOCKER_HOST={} docker exec -t {name} sh -c 'tty; echo pty-ok'",
        p.host()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("/dev/pts/") && text.contains("pty-ok"),
        "exec -t output: {text:?}"
    );

    // logs -f streams until the container stops.
    let logger = unique("logs");
    let _l = Cleanup(vec![logger.clone()]);
    ok(&p.docker(&[
        "run",
        "-d",
        "--name",
        &logger,
        img,
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 1; done",
    ]));
    let started = std::time::Instant::now();
    let out = p.docker(&["logs", "-f", &logger]);
    assert_eq!(ok(&out), "line1\nline2\nline3\n");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "logs -f returned before the container stopped"
    );
    let (d, x) = both(&p, &["logs", &logger]);
    assert_eq!(stdout(&d), stdout(&x));

    // wait reports the exit code.
    let (d, x) = both(&p, &["wait", &logger]);
    assert_eq!(ok(&d), ok(&x));

    // attach: stdin in, output back, exit when the container ends.
    let att = unique("attach");
    let _a = Cleanup(vec![att.clone()]);
    ok(&p.docker(&[
        "run",
        "-di",
        "--name",
        &att,
        img,
        "sh",
        "-c",
        "read x; sleep 1; echo got $x",
    ]));
    // Keep stdin open until the answer is back, as a terminal would.
    let script = format!(
        "(echo hello; sleep 3) | DOCKER_HOST={} docker attach {att}",
        p.host()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(stdout(&out), "got hello\n");

    // stats, kill, rm -f.
    let (d, x) = both(
        &p,
        &["stats", "--no-stream", "--format", "{{.Name}}", &name],
    );
    assert_eq!(ok(&d), ok(&x));
    ok(&p.docker(&["kill", &name]));
    let state = ok(&direct(&["inspect", "-f", "{{.State.Running}}", &name]));
    assert_eq!(state.trim(), "false");
    ok(&p.docker(&["rm", "-f", &name]));
    assert!(!direct(&["inspect", &name]).status.success());
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn cp_build_networks_volumes_events() {
    engine();
    let img = image();
    let p = Proxy::start(&[]);
    let name = unique("cp");
    let _c = Cleanup(vec![name.clone()]);
    ok(&p.docker(&["run", "-d", "--name", &name, img, "sleep", "300"]));
    let local = p.dir.path().join("x.txt");
    std::fs::write(&local, b"copied in\n").unwrap();
    ok(&p.docker(&["cp", local.to_str().unwrap(), &format!("{name}:/tmp/")]));
    assert_eq!(
        ok(&direct(&["exec", &name, "cat", "/tmp/x.txt"])),
        "copied in\n"
    );
    let back = p.dir.path().join("back.txt");
    ok(&p.docker(&["cp", &format!("{name}:/tmp/x.txt"), back.to_str().unwrap()]));
    assert_eq!(std::fs::read(&back).unwrap(), b"copied in\n");

    // docker build with the classic builder.
    let ctx = p.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {img}\nRUN echo built > /built\n"),
    )
    .unwrap();
    let tag = format!("{}:latest", unique("pc-build"));
    let out = Command::new("docker")
        .env("DOCKER_HOST", p.host())
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", &tag, ctx.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        ok(&direct(&["run", "--rm", &tag, "cat", "/built"])),
        "built\n"
    );
    let _ = direct(&["rmi", &tag]);

    let net = unique("pc-net");
    assert_eq!(ok(&p.docker(&["network", "create", &net])).trim().len(), 64);
    assert_eq!(ok(&p.docker(&["network", "rm", &net])).trim(), net);
    let vol = unique("pc-vol");
    assert_eq!(ok(&p.docker(&["volume", "create", &vol])).trim(), vol);
    assert_eq!(ok(&p.docker(&["volume", "rm", &vol])).trim(), vol);

    // events over a closed window: the same through the proxy as directly.
    let since = ok(&direct(&["inspect", "-f", "{{.Created}}", &name]))
        .trim()
        .to_string();
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    std::thread::sleep(Duration::from_millis(1100));
    let filter = format!("container={name}");
    let args = [
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &filter,
        "--format",
        "{{.Action}}",
    ];
    let (d, x) = both(&p, &args);
    assert_eq!(ok(&d), ok(&x));
    assert!(stdout(&x).contains("start"));
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_pinned_unknown_caller_is_refused_with_a_docker_error() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let denied = dir.path().join("denied.sock");
    let spec = format!("unix://{}?caller=stranger", denied.display());
    let p = Proxy::start(&["--listen", &spec]);
    p.wait_for_socket(&denied);
    let out = p.docker_at(&format!("unix://{}", denied.display()), &["ps"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Error response from daemon: portcullis: stranger may not container.list"),
        "stderr: {err}"
    );
    assert!(
        err.contains("(decision "),
        "the refusal names its decision: {err}"
    );
}

fn raw(p: &Proxy, request: &[u8]) -> String {
    common::raw(&p.socket, request, Duration::from_secs(10))
}

fn ping_works(p: &Proxy) {
    let r = raw(
        p,
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("OK"),
        "ping after bad input: {r}"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn bad_input_gets_clear_errors_and_service_continues() {
    engine();
    let p = Proxy::start(&["--max-body", "1024"]);

    let chunked = b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    let r = raw(&p, chunked);
    assert!(r.starts_with("HTTP/1.1 411"), "chunked create: {r}");
    assert!(
        r.contains("\"message\":\"portcullis:") && r.contains("chunked"),
        "{r}"
    );
    ping_works(&p);

    let body = format!("{{\"Image\":\"{}\"}}", "a".repeat(2000));
    let big = format!(
        "POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw(&p, big.as_bytes());
    assert!(
        r.starts_with("HTTP/1.1 413") && r.contains("limit"),
        "oversized: {r}"
    );
    ping_works(&p);

    let r = raw(&p, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("HTTP/2"),
        "h2c: {r}"
    );
    ping_works(&p);

    let huge = format!(
        "GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let r = raw(&p, huge.as_bytes());
    assert!(
        r.starts_with("HTTP/1.1 431"),
        "over 1 MiB of headers (Docker's limit): {r:.80}"
    );
    ping_works(&p);

    let r = raw(
        &p,
        b"GET //containers/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("non-canonical"),
        "non-canonical: {r}"
    );
    let r = raw(
        &p,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 404") && r.contains("unknown route"),
        "unknown: {r}"
    );
    let r = raw(
        &p,
        b"get /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        !r.starts_with("HTTP/1.1 200"),
        "methods are case sensitive: {r}"
    );
    let r = raw(
        &p,
        b"GET /v1.99/_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("outside"),
        "version: {r}"
    );
    ping_works(&p);
}

/// Requests the daemon would read differently from how portcullis would
/// decide them are refused before a decision: a key Go versions fold
/// differently (hiding `Privileged` behind a later duplicate), and a
/// `Connection` header that would have the forwarded request lose the
/// `Content-Type` its form body was read with.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn requests_the_daemon_would_read_differently_are_refused() {
    engine();
    let p = Proxy::start(&[]);
    let body = format!(
        "{{\"Image\":\"{}\",\"HostConfig\":{{\"Privileged\":true,\"Pr\u{131}vileged\":false}}}}",
        image()
    );
    let request = format!(
        "POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw(&p, request.as_bytes());
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("non-ASCII"),
        "decoy key: {r}"
    );
    let form = "fromImage=portcullis-test/busybox";
    let request = format!(
        "POST /images/create?fromSrc=http://127.0.0.1:9/x.tar&repo=r HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close, Content-Type\r\n\r\n{form}",
        form.len()
    );
    let r = raw(&p, request.as_bytes());
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("Connection header"),
        "Connection: Content-Type: {r}"
    );
    ping_works(&p);
}

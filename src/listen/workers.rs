//! Worker threads: one single-threaded runtime per worker, each accepting on
//! every listener, and the listeners handed to them as plain sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::net::{TcpListener, UnixListener};

use super::accept::accept_loop;
use super::binding::Socket;
use super::{Control, HandlerFactory, Listener};
use crate::config::{Limits, ListenerSpec, Workers};

/// Serve every listener on `workers` threads until `control` stops them and
/// their connections have drained (at most `grace` after the stop).
///
/// Why one single-threaded runtime per worker, each accepting on every
/// listener (thread per core, as pingora and envoy do): a connection then
/// lives on one thread from accept to forward: its request, its decision (the
/// policy VM is per thread), its record and its pooled upstream connection.
/// On tokio's shared work-stealing runtime the same request hopped between
/// threads several times, and each wake-up of a parked thread costs more than
/// the proxy's whole latency budget on a small VM. The kernel spreads new
/// connections over the workers blocked in `accept`.
///
/// A worker's runtime ends when it returns: the streams and hijacked
/// connections still open on it are closed then.
pub fn serve(
    listeners: Vec<Listener>,
    limits: Limits,
    workers: Workers,
    make_handler: HandlerFactory,
    control: Arc<Control>,
    grace: Duration,
) -> anyhow::Result<()> {
    let limits = Arc::new(limits);
    let mut shared = Vec::new();
    for l in listeners {
        shared.push(l.into_shareable()?);
    }
    let mut threads = Vec::new();
    for worker in 0..workers.threads() {
        let mut mine = Vec::new();
        for l in &shared {
            mine.push(l.try_clone()?);
        }
        let (control, limits, make_handler) =
            (control.clone(), limits.clone(), make_handler.clone());
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-worker-{worker}"))
            .spawn(move || -> anyhow::Result<()> {
                let runtime =
                    worker_runtime(workers.idle_spin).context("starting a worker runtime")?;
                let handler = make_handler();
                runtime.block_on(async move {
                    // hyper arms a header-read timer for every request. tokio
                    // wakes its own driver (an eventfd write and an extra
                    // epoll round, per request) whenever a new timer expires
                    // before every pending one; a short timer that always
                    // pends keeps the header timers from being "earliest".
                    tokio::spawn(async {
                        loop {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    });
                    let mut tasks = Vec::new();
                    for l in mine {
                        let listener = l.into_tokio()?;
                        let (control, limits, handler) =
                            (control.clone(), limits.clone(), handler.clone());
                        tasks.push(tokio::spawn(accept_loop(
                            listener, control, limits, handler,
                        )));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                    // Stopped: let the requests in flight finish.
                    control.drained(grace).await;
                    anyhow::Ok(())
                })
            })
            .context("starting a worker thread")?;
        threads.push(thread);
    }
    drop(shared);
    for t in threads {
        match t.join() {
            Ok(result) => result?,
            Err(_) => bail!("a worker thread panicked"),
        }
    }
    Ok(())
}

/// A worker's runtime: single-threaded, and spinning for `idle_spin` before it
/// sleeps.
///
/// Why spin: with nothing left to run, a worker sleeps in `epoll_wait` until
/// the upstream answers or the client sends its next request, often a few
/// microseconds later. On a VM, putting a vCPU to sleep and waking it again (an
/// inter-processor interrupt, two VM exits) costs tens of microseconds per
/// request, measured as about half of the proxy's samples at one client. A
/// short busy-wait lets what arrives meanwhile be picked up without sleeping;
/// the price is at most `idle_spin` of CPU each time a worker runs out of work.
pub fn worker_runtime(idle_spin: Duration) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if !idle_spin.is_zero() {
        builder.on_thread_park(move || {
            let until = Instant::now() + idle_spin;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        });
    }
    builder.build()
}

/// A bound listener as a plain socket, which any worker's runtime can adopt.
struct Shareable {
    spec: ListenerSpec,
    socket: SharedSocket,
}

enum SharedSocket {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
    Tls(std::net::TcpListener, tokio_rustls::TlsAcceptor),
}

impl Listener {
    fn into_shareable(self) -> anyhow::Result<Shareable> {
        let socket = match self.socket {
            Socket::Unix(l) => SharedSocket::Unix(l.into_std()?),
            Socket::Tcp(l) => SharedSocket::Tcp(l.into_std()?),
            Socket::Tls(l, acc) => SharedSocket::Tls(l.into_std()?, acc),
        };
        Ok(Shareable {
            spec: self.spec,
            socket,
        })
    }
}

impl Shareable {
    fn try_clone(&self) -> anyhow::Result<Shareable> {
        let socket = match &self.socket {
            SharedSocket::Unix(l) => SharedSocket::Unix(l.try_clone()?),
            SharedSocket::Tcp(l) => SharedSocket::Tcp(l.try_clone()?),
            SharedSocket::Tls(l, acc) => SharedSocket::Tls(l.try_clone()?, acc.clone()),
        };
        Ok(Shareable {
            spec: self.spec.clone(),
            socket,
        })
    }

    /// Register with the current (worker's) runtime.
    fn into_tokio(self) -> anyhow::Result<Listener> {
        let socket = match self.socket {
            SharedSocket::Unix(l) => {
                l.set_nonblocking(true)?;
                Socket::Unix(UnixListener::from_std(l)?)
            }
            SharedSocket::Tcp(l) => {
                l.set_nonblocking(true)?;
                Socket::Tcp(TcpListener::from_std(l)?)
            }
            SharedSocket::Tls(l, acc) => {
                l.set_nonblocking(true)?;
                Socket::Tls(TcpListener::from_std(l)?, acc)
            }
        };
        Ok(Listener {
            spec: self.spec,
            socket,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    /// A spinning worker still sleeps (timers fire on time, not early or
    /// never) and still wakes for I/O from another thread.
    #[test]
    fn a_spinning_worker_runs_timers_and_io() {
        let runtime = worker_runtime(Duration::from_micros(50)).expect("runtime");
        let (mut a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            std::io::Write::write_all(&mut a, b"x").expect("write");
        });
        runtime.block_on(async move {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(start.elapsed() >= Duration::from_millis(5));
            let mut b = UnixStream::from_std(b).expect("adopt");
            let mut byte = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(5), b.read_exact(&mut byte))
                .await
                .expect("woken by the write")
                .expect("read");
            assert_eq!(&byte, b"x");
        });
        writer.join().expect("writer");
    }
}

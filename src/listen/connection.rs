//! One connection's HTTP: the HTTP/2 prior-knowledge check on its first
//! bytes, then hyper's HTTP/1.1 server with the head limits, until the
//! connection ends or a stop closes it after its request in flight.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use super::refusals::{count_refused_head, raw_error};
use super::{Connection, Control, Handler, Refused};
use crate::config::Limits;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

pub(super) async fn serve_connection<IO>(
    mut io: IO,
    conn: Connection,
    limits: &Limits,
    handler: Handler,
    mut stopping: watch::Receiver<bool>,
    control: &Control,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // HTTP/2 prior knowledge would reach BuildKit's gRPC server past every
    // check; hyper would only drop it silently. Look at the first bytes and
    // refuse it in words.
    let mut head = Vec::with_capacity(H2_PREFACE.len());
    let peek = tokio::time::timeout(limits.header_read_timeout, async {
        let mut byte = [0u8; 64];
        while head.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&head) {
            let want = H2_PREFACE.len() - head.len();
            let n = io.read(&mut byte[..want]).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&byte[..n]);
        }
        Ok::<_, std::io::Error>(())
    });
    // A connection that has sent nothing yet has nothing in flight: a stop closes it.
    let peeked = tokio::select! {
        p = peek => p,
        _ = until_stopped(&mut stopping) => return,
    };
    let refusals = &control.refusals;
    match peeked {
        Ok(Ok(())) if !head.is_empty() => {}
        Err(_) => {
            refusals.header_timeout.fetch_add(1, Ordering::Relaxed);
            return;
        }
        _ => return,
    }
    if head == H2_PREFACE {
        refusals.h2_preface.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(listener = %conn.listener, peer = ?conn.peer, "refused HTTP/2 prior-knowledge connection");
        let msg = raw_error(
            400,
            "Bad Request",
            "portcullis: HTTP/2 prior knowledge (h2c) is refused: it is an opaque tunnel to BuildKit",
        );
        Box::pin(control.record_refused(Arc::new(conn), Refused::H2Preface)).await;
        let _ = io.write_all(msg.as_bytes()).await;
        let _ = io.shutdown().await;
        return;
    }

    let conn = Arc::new(conn);
    let for_refusal = conn.clone();
    let io = TokioIo::new(Prefixed {
        head,
        pos: 0,
        inner: io,
    });
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let fut = handler(req, conn.clone());
        async move { Ok::<_, std::convert::Infallible>(fut.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The head limit is exact; the read buffer only has to hold a head
        // that fits it (and never be below hyper's minimum).
        .max_header_size(limits.max_header_bytes)
        .max_buf_size((limits.max_header_bytes + 4096).max(8192))
        .max_headers(limits.max_headers);
    let serving = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(serving);
    let ended = tokio::select! {
        ended = serving.as_mut() => ended,
        _ = until_stopped(&mut stopping) => {
            // Answer the request in flight, then close.
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    if let Err(e) = ended {
        if let Some(refused) = count_refused_head(&e, refusals) {
            // hyper has answered (431 or 400); the record follows.
            Box::pin(control.record_refused(for_refusal, refused)).await;
        }
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Resolves once a stop is asked for (or the control is gone).
pub(super) async fn until_stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// A stream that first replays the bytes already read for the preface check.
struct Prefixed<IO> {
    head: Vec<u8>,
    pos: usize,
    inner: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.head[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    // Half-close reaches the client: attach and exec rely on it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

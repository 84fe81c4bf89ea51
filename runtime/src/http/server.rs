//! The connection layer of [`super::serve`]: an accept loop under a connection limit, one
//! HTTP/1.1 connection (hyper) per task with header and idle timeouts, and hyper's own
//! answers to requests it cannot parse rewritten as JSON errors.
//!
//! - **Connection limit.** A permit of a semaphore of [`Limits::max_connections`] is taken
//!   *before* `accept`, so connections over the limit stay in the kernel's backlog and cost
//!   this process no descriptor; a connection returns its permit when it closes.
//! - **Accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`, …) are not fatal: the loop warns (at
//!   most once a minute), pauses (10 ms, doubling to 1 s) and accepts again. Errors of a single
//!   connection (reset or aborted before it was accepted) are skipped without a pause.
//! - **Timeouts.** A connection is in one of three phases: a request is in flight (the
//!   handler bounds itself: the body deadline, `?wait=` at most 5 minutes), reading a
//!   request head (from the connection's start, or from the first byte of a later
//!   request: [`Limits::header_timeout`]), or idle between requests
//!   ([`Limits::idle_timeout`]). [`Activity`] tracks the phase from the bytes read and
//!   the requests handed to the router; the connection task closes the connection when its
//!   phase's deadline passes. hyper's own `header_read_timeout` is not used: it runs from
//!   the end of a response, so it would also cut idle keep-alive connections.
//! - **JSON for hyper's answers.** When hyper cannot parse a request it writes `400`,
//!   `414` or `431` with an empty body, before any service runs. [`Guarded`], the
//!   connection's I/O, recognises that head (a 4xx with `content-length: 0` and no
//!   `content-type` at the end of a write, a shape the router never produces: every error
//!   of the router has a JSON body) and writes `{"error", "code"}` in its place. It reports
//!   itself as not vectored, so hyper hands it each response head in one flat buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::DEFAULT_MAX_CONNECTIONS;
use super::error::ErrorBody;

/// The most connections a server takes, whatever it is configured with (the semaphore's
/// permits are counted in `u32` when the server drains).
const MAX_CONNECTIONS_CAP: usize = 1 << 20;

/// The first pause after a failed accept; it doubles up to [`MAX_ACCEPT_PAUSE`].
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between accepts while they fail.
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// How often the "connection limit reached" and "accept failed" warnings may repeat.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The connection-level settings of [`run`] (from `HttpOptions`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// How long a request head may take (from the connection's start, or from the first
    /// byte of a later request).
    pub(crate) header_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    pub(crate) idle_timeout: Duration,
    /// The most connections served at once.
    pub(crate) max_connections: usize,
}

/// 512, or half the process's open-file limit when that is lower (at least 8). The limit
/// is read from `/proc/self/limits` (Linux); elsewhere the default is 512.
pub(crate) fn default_max_connections() -> usize {
    open_file_limit().map_or(DEFAULT_MAX_CONNECTIONS, |limit| {
        (limit / 2).clamp(8, DEFAULT_MAX_CONNECTIONS)
    })
}

/// The soft limit on open files (`ulimit -n`), when the platform tells it.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Accepts connections on `listener` and serves `app` on each, until `shutdown`; then
/// stops accepting, asks every connection to finish its request in flight and close, and
/// returns once all have.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = Limits {
        max_connections: limits.max_connections.clamp(1, MAX_CONNECTIONS_CAP),
        ..limits
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = AcceptBackoff::default();
    let mut warned_at: Option<Instant> = None;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned_at.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY) {
                    warned_at = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "the HTTP connection limit is reached: new connections wait in the \
                         listen backlog until one closes (raise REPRISE_HTTP_MAX_CONNECTIONS \
                         if this is normal load)"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff.succeeded();
                tokio::spawn(connection(
                    stream,
                    app.clone(),
                    limits,
                    closed.clone(),
                    permit,
                ));
            }
            Err(error) => {
                drop(permit);
                if let Some(pause) = backoff.failed(&error) {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut shutdown => break,
                    }
                }
            }
        }
    }
    drop(listener);
    drop(closed);
    let _ = closing.send(());
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// The pauses between failed accepts, and their warning (at most one a minute).
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// Failed accepts since the last one that succeeded.
    failures: u64,
    pause: Duration,
    /// Failed accepts since the last warning, and when that was.
    unreported: u64,
    warned_at: Option<Instant>,
}

impl AcceptBackoff {
    /// How long to pause after `error`: nothing for an error of one connection (it was
    /// reset before it was accepted), else 10 ms doubling to 1 s while accepts keep
    /// failing. Warns at most once a minute, however the failures come and go.
    fn failed(&mut self, error: &io::Error) -> Option<Duration> {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
        ) {
            return None;
        }
        self.failures += 1;
        self.unreported += 1;
        self.pause = if self.failures == 1 {
            FIRST_ACCEPT_PAUSE
        } else {
            (self.pause * 2).min(MAX_ACCEPT_PAUSE)
        };
        if self
            .warned_at
            .is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY)
        {
            tracing::warn!(
                %error,
                failed = self.unreported,
                "accepting an HTTP connection failed; retrying with a growing pause (up to \
                 1 s) until it succeeds, and warning at most once a minute. `Too many open \
                 files` means the process is out of descriptors: raise `ulimit -n` or lower \
                 REPRISE_HTTP_MAX_CONNECTIONS"
            );
            self.warned_at = Some(Instant::now());
            self.unreported = 0;
        }
        Some(self.pause)
    }

    /// An accept succeeded: the next failure pauses 10 ms again.
    fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// Serves one connection until it ends, its phase's deadline passes, or the server shuts
/// down (then: its request in flight is answered and it closes). Holds `_permit` until then.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    mut closing: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Guarded::new(stream, activity.clone()));
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = tracked.begin();
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(Body::new)).await;
            drop(in_flight);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    loop {
        // While a request is in flight there is no deadline; look again later.
        let look_at = activity
            .deadline(&limits)
            .unwrap_or_else(|| Instant::now() + limits.header_timeout.min(limits.idle_timeout));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(look_at) => {
                if activity.deadline(&limits).is_some_and(|deadline| deadline <= Instant::now()) {
                    tracing::debug!("HTTP connection closed: header or idle timeout");
                    return;
                }
            }
            _ = closing.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Where a connection stands: how many requests the router holds, and since when the
/// connection is idle or reading a request head.
#[derive(Debug)]
struct Activity(Mutex<Phase>);

#[derive(Debug)]
struct Phase {
    /// Requests handed to the router and not answered yet.
    in_flight: usize,
    /// When the idle or head-reading phase started.
    since: Instant,
    /// Bytes of a request head arrived since the last answer (or it is a new connection).
    reading_head: bool,
}

impl Activity {
    /// A new connection: reading its first request head from now.
    fn new() -> Self {
        Activity(Mutex::new(Phase {
            in_flight: 0,
            since: Instant::now(),
            reading_head: true,
        }))
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: an idle connection starts reading a request head.
    fn read(&self) {
        let mut phase = self.phase();
        if phase.in_flight == 0 && !phase.reading_head {
            phase.reading_head = true;
            phase.since = Instant::now();
        }
    }

    /// A request reaches the router; it is in flight until the guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.phase().in_flight += 1;
        InFlight(self.clone())
    }

    /// When the connection must close unless something happens: `None` while a request
    /// is in flight.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let phase = self.phase();
        if phase.in_flight > 0 {
            return None;
        }
        let timeout = if phase.reading_head {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        Some(phase.since + timeout)
    }
}

/// A request in flight; answered (or abandoned) when dropped: the connection turns idle.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        phase.in_flight = phase.in_flight.saturating_sub(1);
        if phase.in_flight == 0 {
            phase.reading_head = false;
            phase.since = Instant::now();
        }
    }
}

/// A connection's socket as hyper sees it: reads mark [`Activity`], and hyper's empty
/// answers to unparsable requests are rewritten as JSON errors.
struct Guarded {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// A rewritten answer being written, in place of the buffer hyper handed over.
    rewrite: Option<Rewrite>,
}

impl Guarded {
    fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Guarded {
            inner,
            activity,
            rewrite: None,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        poll
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rewrite.is_none() {
            match Rewrite::of(buf) {
                Some(rewrite) => this.rewrite = Some(rewrite),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // hyper calls again with the same buffer after `Pending`, and flushes only once
        // its buffer is written: the rewrite completes before anything else is written.
        let Guarded { inner, rewrite, .. } = this;
        let Some(pending) = rewrite else {
            return Poll::Ready(Ok(0));
        };
        while pending.written < pending.bytes.len() {
            let n =
                ready!(Pin::new(&mut *inner).poll_write(cx, &pending.bytes[pending.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            pending.written += n;
        }
        let replaced = pending.replaces;
        *rewrite = None;
        Poll::Ready(Ok(replaced))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The bytes written in place of a buffer that ends with one of hyper's empty answers.
#[derive(Debug)]
struct Rewrite {
    bytes: Vec<u8>,
    written: usize,
    /// The length of hyper's buffer, reported as written once `bytes` are.
    replaces: usize,
}

impl Rewrite {
    /// The rewrite of `buf` when it ends with hyper's answer to an unparsable request: a
    /// `400`, `414` or `431` head with `content-length: 0` and no `content-type`. What
    /// precedes it (earlier answers on the connection) is kept.
    fn of(buf: &[u8]) -> Option<Rewrite> {
        if !buf.ends_with(b"\r\n\r\n") {
            return None;
        }
        let start = buf.windows(9).rposition(|w| w == b"HTTP/1.1 ")?;
        let head = buf[start..].to_ascii_lowercase();
        let status: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
        let (reason, code, message) = automatic_answer(status)?;
        let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
        if !has(b"\r\ncontent-length: 0\r\n") || has(b"\r\ncontent-type:") {
            return None;
        }
        let body = serde_json::to_vec(&ErrorBody {
            error: message.to_owned(),
            code: code.to_owned(),
            violations: None,
        })
        .ok()?;
        let mut bytes = buf[..start].to_vec();
        bytes.extend_from_slice(
            format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(&body);
        Some(Rewrite {
            bytes,
            written: 0,
            replaces: buf.len(),
        })
    }
}

/// The reason phrase, `code` and message of each answer hyper gives on its own.
fn automatic_answer(status: u16) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match status {
        400 => (
            "Bad Request",
            "bad_request",
            "the request is not valid HTTP/1.1 (a malformed request line, header or \
             Content-Length, or bytes that are not HTTP); send a well-formed HTTP/1.1 request",
        ),
        414 => (
            "URI Too Long",
            "uri_too_long",
            "the request target (path and query) is longer than this server reads (64 KiB); \
             send large values in a JSON body instead",
        ),
        431 => (
            "Request Header Fields Too Large",
            "headers_too_large",
            "the request headers are larger than this server reads (about 400 KiB, or more \
             than 100 headers); send fewer or smaller headers",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_hypers_empty_answers_are_rewritten() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let rewrite = Rewrite::of(hyper_400).unwrap();
        let text = String::from_utf8(rewrite.bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("content-type: application/json"), "{text}");
        let body: serde_json::Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["code"], "bad_request");
        assert_eq!(rewrite.replaces, hyper_400.len());

        // An earlier answer in the same buffer is kept, the tail is rewritten.
        let mut two = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        two.extend_from_slice(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n");
        let text = String::from_utf8(Rewrite::of(&two).unwrap().bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 414"));
        assert!(text.contains("uri_too_long"), "{text}");

        // The router's own answers are left alone.
        for own in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
            b"{\"error\":\"x\"}",
        ] {
            assert!(Rewrite::of(own).is_none(), "{}", String::from_utf8_lossy(own));
        }
    }

    #[test]
    fn the_connection_limit_follows_the_open_file_limit() {
        let limit = default_max_connections();
        assert!((8..=DEFAULT_MAX_CONNECTIONS).contains(&limit), "{limit}");
        if let Some(files) = open_file_limit() {
            assert!(limit <= files.max(16) / 2, "{limit} of {files} descriptors");
        }
    }
}

//! A client stream whose writes fail when the client accepts no bytes for
//! too long (`limits.send_timeout`), as nginx's `send_timeout` does.
//!
//! A client that sends requests but never reads the responses fills the
//! socket's send buffer, and then every write waits. Without a limit the
//! connection, and the app connection whose response it waits to send,
//! would stay open for ever. The timer runs only while a write or flush
//! waits, and restarts when the socket accepts bytes again.
// NOTE: Linux reports a socket writable only once about half of its send
// buffer is free, so a reader slower than half the buffer per period is cut
// while it still reads, as with nginx. Measuring progress by the unsent
// byte count (SIOCOUTQ) would spare it, but needs unsafe code.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream with a send timeout. `timed_out` is set when the timeout fired,
/// so that the access log can tell this close from a client that left.
pub struct SendTimeout<S> {
    inner: S,
    limit: Duration,
    /// Made at the first write that waits, so that a connection whose
    /// writes never wait allocates no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// Set while the timer runs: from the first write or flush that waited
    /// until the socket accepts a byte.
    waiting: bool,
    timed_out: Arc<AtomicBool>,
}

/// The error of a write that waited longer than the send timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client accepted no bytes for longer than the send timeout")]
pub struct SendTimedOut;

// === impl SendTimeout ===

impl<S> SendTimeout<S> {
    pub fn new(inner: S, limit: Duration, timed_out: Arc<AtomicBool>) -> Self {
        SendTimeout {
            inner,
            limit,
            timer: None,
            waiting: false,
            timed_out,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Notes the outcome of a write: bytes accepted stop the timer, and a
    /// wait starts it or fails once it has run out.
    fn check_write(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.waiting = false;
        }
        self.check(cx, poll)
    }

    /// Notes the outcome of a write, flush or shutdown: a wait starts the
    /// timer or fails once it has run out. A flush that completes is no
    /// progress by itself: a socket's flush always completes at once, even
    /// while its writes wait.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            return poll;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = crate::deadline::after(Instant::now(), self.limit);
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = self.timer.as_mut().expect("the timer is made above");
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, SendTimedOut)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, shut)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn write_fails_when_peer_stops_reading() {
        let (client, mut server) = tokio::io::duplex(4);
        let flag = Arc::new(AtomicBool::new(false));
        let mut io = SendTimeout::new(client, Duration::from_secs(5), flag.clone());

        let error = io.write_all(b"more than four bytes").await.unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(flag.load(Ordering::Relaxed));
        let mut head = [0u8; 4];
        server.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"more");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_reader_that_keeps_reading_is_not_cut() {
        let (client, mut server) = tokio::io::duplex(4);
        let flag = Arc::new(AtomicBool::new(false));
        let mut io = SendTimeout::new(client, Duration::from_secs(5), flag.clone());
        let reader = tokio::spawn(async move {
            let mut text = Vec::new();
            let mut byte = [0u8; 1];
            while server.read(&mut byte).await.unwrap() > 0 {
                text.push(byte[0]);
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
            text
        });

        io.write_all(b"slow but steady").await.unwrap();
        io.shutdown().await.unwrap();

        assert_eq!(reader.await.unwrap(), b"slow but steady");
        assert!(!flag.load(Ordering::Relaxed));
    }
}

//! A stream that first replays bytes already read from it.
//!
//! Admission reads the first bytes of a connection itself (the PROXY header,
//! or enough to see there is none); HTTP or TLS must then see those bytes
//! again. tokio's `chain` covers only reads, so this small wrapper keeps
//! writes and shutdown going to the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

pub struct PrefixedIo<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> PrefixedIo<S> {
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        PrefixedIo { prefix, inner }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefixedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Free the buffer: an idle keep-alive connection would
                // otherwise hold its capacity for as long as it lives.
                self.prefix = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

super::delegate_async_write!(PrefixedIo);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn replays_prefix_then_reads_and_writes_inner() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut io = PrefixedIo::new(BytesMut::from(&b"hello "[..]), client);
        server.write_all(b"world").await.unwrap();
        drop(server.shutdown().await);

        let mut text = String::new();
        let mut small = [0u8; 4];
        let n = io.read(&mut small).await.unwrap();
        text.push_str(std::str::from_utf8(&small[..n]).unwrap());
        io.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello world");
    }
}

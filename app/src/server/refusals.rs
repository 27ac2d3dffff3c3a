//! The answers hyper writes by itself, given the JSON error body every other
//! refusal carries.
//!
//! Before any route runs, hyper answers a request it cannot parse on its own:
//! `400` (a malformed request line or header), `414` (a URI too long) or `431`
//! (a head over `http.max_header_bytes`, or more than `http.max_headers`
//! fields), each with an empty body, then closes the connection. hyper has
//! no hook to shape those answers, so [`Refusals`] wraps the connection's
//! socket and replaces such an answer as it is written: a response head with
//! one of those statuses and `content-length: 0`. cartd's own answers never
//! look like that (every error it writes has a JSON body), so nothing else is
//! touched; the check costs a byte comparison per write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket whose writes are watched for hyper's automatic answers.
#[derive(Debug)]
pub struct Refusals<S> {
    inner: S,
    /// The replacement being written, and how much of it is out, when one
    /// is under way.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> Refusals<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner, pending: None }
    }
}

/// The JSON answer that replaces hyper's automatic `head`, if it is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    const PREFIX: &[u8] = b"HTTP/1.1 4";
    if !head.starts_with(PREFIX) || head.len() < 12 {
        return None;
    }
    let (code, reason, error, message) = match &head[9..12] {
        b"400" => (400, "Bad Request", "invalid_request", "the request could not be read as HTTP/1.1"),
        b"414" => (414, "URI Too Long", "uri_too_long", "the request's URI is too long"),
        b"431" => (
            431,
            "Request Header Fields Too Large",
            "request_header_fields_too_large",
            "the request's headers are too large or too many",
        ),
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let fields = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    if !fields.contains("\r\ncontent-length: 0") || fields.contains("\r\ncontent-type:") {
        return None;
    }
    let body = format!(r#"{{"error":"{error}","message":"{message}"}}"#);
    Some(
        format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncWrite + Unpin> Refusals<S> {
    /// Writes the pending replacement; ready once all of it is out.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.pending {
            if *sent == bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Refusals<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Refusals<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending.is_none()
            && let Some(bytes) = replacement(buf)
        {
            self.pending = Some((bytes, 0));
        }
        if self.pending.is_some() {
            // hyper's head counts as written once the replacement is out.
            return self.poll_pending(cx).map_ok(|()| buf.len());
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // An automatic answer is a head alone: one buffer.
        if let [only] = bufs
            && (self.pending.is_some() || replacement(only).is_some())
        {
            return self.poll_write(cx, only);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_empty_automatic_answers_are_replaced() {
        let automatic = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let replaced = String::from_utf8(replacement(automatic).unwrap()).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{replaced}");
        assert!(replaced.ends_with(
            r#"{"error":"request_header_fields_too_large","message":"the request's headers are too large or too many"}"#
        ));
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").is_some());
        // cartd's own answers: a JSON body, or not a status hyper makes up.
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(own).is_none());
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 57\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"{\"lines\":[]}").is_none());
    }
}

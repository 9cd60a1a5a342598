//! What happens to a TCP connection between `accept` and the first request: the per-IP
//! connection count and the idle timeout (PROTOCOL §8.2).
//!
//! A client that opens connections and never finishes a request (slowloris) must not hold file
//! descriptors without limit: every accepted connection counts against its address — not only
//! upgraded sockets — a connection that sends nothing within `security.header_timeout_s` of
//! being accepted, or nothing for `security.idle_timeout_s` later, is dropped. (The time a
//! request's head may take once begun is hyper's header-read timeout, set where the server is
//! built.)

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum_server::accept::Accept;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};

use crate::{
    peer::{IpSlot, trusted},
    state::AppState,
};

/// The answer to a connection over its address's limit, written before it is dropped.
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: 62\r\n\
connection: close\r\n\r\n{\"error\":\"Too many connections\",\"code\":\"too_many_connections\"}";

/// Admits accepted TCP connections: counts them per peer address and arms their idle timeout.
/// Peers that are trusted proxies are not counted here: the clients behind them are, by their
/// forwarded address, on the WebSocket upgrade.
#[derive(Clone)]
pub struct Admit {
    pub state: AppState,
}

impl<S> Accept<TcpStream, S> for Admit {
    type Stream = Admitted;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Admitted, S)>>;

    fn accept(&self, tcp: TcpStream, service: S) -> Self::Future {
        // Nagle's algorithm would hold a small packet back until the client acknowledges the
        // previous one, and clients delay acknowledgements by up to 40 ms: that was the fan-out
        // latency tail.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let peer = tcp.peer_addr().map(|a: SocketAddr| a.ip());
        let slot = match peer {
            Ok(ip) if !trusted(&self.state, ip) => match IpSlot::take(&self.state, ip) {
                Some(slot) => Some(slot),
                None => {
                    // A fresh socket's send buffer takes these few bytes at once.
                    let _ = tcp.try_write(TOO_MANY);
                    return std::future::ready(Err(io::Error::other("too many connections from one address")));
                }
            },
            _ => None,
        };
        let security = &self.state.config.security;
        let idle = Duration::from_secs(security.idle_timeout_s);
        // Until its first byte, a connection has the header timeout: hyper's own starts with
        // the first byte of a request, so a connection that sends nothing would wait for the
        // idle timeout instead.
        let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(security.header_timeout_s)));
        std::future::ready(Ok((Admitted { tcp, _slot: slot, idle, deadline }, service)))
    }
}

/// An admitted connection: its slot is given back when it closes, upgraded or not, and a read
/// that waits longer than the idle timeout for a byte fails.
pub struct Admitted {
    tcp: TcpStream,
    _slot: Option<IpSlot>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl AsyncRead for Admitted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    let idle = this.idle;
                    this.deadline.as_mut().reset(Instant::now() + idle);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

//! A connection's WebSocket: tungstenite reads the client's frames and answers its control
//! frames, while the server's text frames are framed here, into a write buffer that exists only
//! while something is waiting to leave.
//!
//! tungstenite keeps its write buffer at the largest size it ever reached, for the life of the
//! socket: every idle connection carried ~2.8 KiB of it after its start-up packets, and a client
//! that once asked for a page of history carried that page's size (tens of KiB) from then on.
//! [`Batched`] grows to whatever a burst needs — so a fan-out burst still leaves in one write per
//! flush — and gives the memory back as soon as the burst is on the wire.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures_util::SinkExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

/// A server connection's socket.
pub type Socket = WebSocketStream<Batched<TokioIo<Upgraded>>>;

/// Bytes tungstenite may have waiting in the buffer at once (its control frames: pongs, pings,
/// close). A client that sends pings and never reads its pongs is refused past this, instead of
/// growing the buffer for as long as it keeps sending.
const CONTROL_BACKLOG: usize = 16 * 1024;

/// Wraps an upgraded connection. `frame_max` bounds what the client may send.
pub async fn open(upgraded: Upgraded, frame_max: usize) -> Socket {
    // The read buffer keeps its size for the life of the connection too: client frames are
    // small, and a bigger one reserves its own length. tungstenite's write buffer is bypassed for
    // text frames ([`Batched::text`]); with a size of 0 its control frames go straight to
    // [`Batched`], so no frame is ever split between the two.
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(frame_max))
        .max_frame_size(Some(frame_max));
    WebSocketStream::from_raw_socket(Batched::new(TokioIo::new(upgraded)), Role::Server, Some(config)).await
}

/// Queues one text frame on `socket`; it leaves with the next [`flush`].
pub fn queue_text(socket: &mut Socket, text: &str) {
    socket.get_mut().text(text);
}

/// Sends tungstenite's pending control frames and everything queued. A server's answer to the
/// client's Close frame is handed to the stream with an error (`ConnectionClosed`) and never
/// flushed by tungstenite, so the buffer is drained here whatever tungstenite answered.
pub async fn flush(socket: &mut Socket) -> Result<(), tungstenite::Error> {
    let result = SinkExt::flush(socket).await;
    AsyncWriteExt::flush(socket.get_mut()).await?;
    result
}

/// A write buffer under the WebSocket: it takes every write whole (so frames written here and by
/// tungstenite never interleave), sends on flush, and frees its memory once all is sent.
pub struct Batched<T> {
    io: T,
    buf: Vec<u8>,
    /// How much of `buf` the socket has taken.
    sent: usize,
    /// Bytes tungstenite wrote since the buffer was last empty.
    control: usize,
}

impl<T> Batched<T> {
    fn new(io: T) -> Self {
        Batched { io, buf: Vec::new(), sent: 0, control: 0 }
    }

    /// Appends one final, unmasked text frame (RFC 6455 §5.2; a server never masks).
    fn text(&mut self, payload: &str) {
        let len = payload.len();
        self.buf.reserve(len + 10);
        self.buf.push(0x81);
        match len {
            0..=125 => self.buf.push(len as u8),
            126..=0xFFFF => {
                self.buf.push(126);
                self.buf.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.buf.push(127);
                self.buf.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        self.buf.extend_from_slice(payload.as_bytes());
    }
}

impl<T: AsyncWrite + Unpin> Batched<T> {
    /// Writes out everything buffered, then releases the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf = Vec::new();
        self.sent = 0;
        self.control = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Batched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.control + data.len() > CONTROL_BACKLOG {
            return Poll::Ready(Err(io::Error::other("the peer does not read its control frames")));
        }
        self.control += data.len();
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tungstenite::protocol::frame::{Frame, coding::Data, coding::OpCode};

    use super::*;

    /// The frame tungstenite itself would write for `payload`.
    fn tungstenite_frame(payload: &str) -> Vec<u8> {
        let mut out = Vec::new();
        Frame::message(payload.to_owned(), OpCode::Data(Data::Text), true).format(&mut out).unwrap();
        out
    }

    #[test]
    fn text_frames_match_tungstenites_at_every_length_encoding() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 70_000] {
            let payload = "a".repeat(len);
            let mut batched = Batched::new(Vec::<u8>::new());
            batched.text(&payload);
            assert_eq!(batched.buf, tungstenite_frame(&payload), "length {len}");
        }
    }

    #[tokio::test]
    async fn a_flush_sends_everything_in_order_and_frees_the_buffer() {
        let (mut near, mut far) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far, &mut got).await.map(|_| got)
        });
        let mut batched = Batched::new(&mut near);
        batched.text("first");
        batched.write_all(b"\x8a\x00").await.unwrap();
        batched.text(&"b".repeat(300));
        assert!(batched.buf.capacity() > 300);
        batched.flush().await.unwrap();
        assert_eq!(batched.buf.capacity(), 0, "the memory is given back once sent");
        drop(batched);
        drop(near);
        let mut expected = tungstenite_frame("first");
        expected.extend_from_slice(b"\x8a\x00");
        expected.extend(tungstenite_frame(&"b".repeat(300)));
        assert_eq!(reader.await.unwrap().unwrap(), expected);
    }

    #[tokio::test]
    async fn control_frames_a_peer_never_reads_are_refused_past_the_backlog() {
        let (mut near, _far) = tokio::io::duplex(64);
        let mut batched = Batched::new(&mut near);
        let pong = [0x8a, 0x7d].iter().copied().chain([0u8; 125]).collect::<Vec<_>>();
        let mut written = 0;
        while batched.write_all(&pong).await.is_ok() {
            written += pong.len();
            assert!(written <= CONTROL_BACKLOG);
        }
        assert!(written > CONTROL_BACKLOG - pong.len());
    }
}

//! [`DataStream`]: one stream of a circuit as a tokio [`AsyncRead`] + [`AsyncWrite`].
//!
//! A stream's bytes live in a small state shared with the circuit task: the bytes the exit
//! sent that the reader has not taken yet, and the bytes the writer gave that the circuit has
//! not packaged into DATA cells yet. Both are bounded:
//! - reading: the circuit runs with manual stream SENDMEs
//!   ([`CircuitConfig::manual_stream_sendme`](onion_core::client::CircuitConfig)), so a
//!   stream SENDME leaves only once the reader has taken the data: the exit can never have
//!   more than a stream window (500 cells) plus ten cells unread here;
//! - writing: at most [`WRITE_BUFFER`] bytes wait; beyond that `poll_write` is pending until
//!   the circuit's windows and queues let DATA cells go (the core's `send_data`
//!   backpressure).

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use onion_cell::relaycell::StreamId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::error::StreamError;

/// Most bytes written to a [`DataStream`] that wait for the circuit to package them.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// How a stream ended, as its reader and writer see it.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// RELAY_END with reason DONE: end of file for the reader, broken pipe for the writer.
    Eof,
    /// Anything else.
    Error(StreamError),
}

/// The state a stream shares with its circuit task.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Delivered bytes not read yet.
    pub(crate) read_buf: VecDeque<u8>,
    /// The reader waiting for bytes.
    pub(crate) read_waker: Option<Waker>,
    /// Bytes read since the circuit task last reported consumption.
    pub(crate) consumed: usize,
    /// Written bytes not packaged yet.
    pub(crate) write_buf: VecDeque<u8>,
    /// The writer waiting for room (or a flush waiting for an empty buffer).
    pub(crate) write_waker: Option<Waker>,
    /// Set once the stream ended.
    pub(crate) ended: Option<Ended>,
    /// The [`DataStream`] was dropped: send what is buffered, then RELAY_END.
    pub(crate) dropped: bool,
}

/// A stream's shared state and the circuit task's wake-up.
#[derive(Debug)]
pub(crate) struct StreamShared {
    /// The state.
    state: Mutex<StreamState>,
    /// Wakes the circuit task.
    task: Arc<Notify>,
}

impl StreamShared {
    /// A fresh state for a stream of the task woken by `task`.
    pub(crate) fn new(task: Arc<Notify>) -> Arc<Self> {
        Arc::new(StreamShared {
            state: Mutex::new(StreamState::default()),
            task,
        })
    }

    /// Lock the state (a poisoned lock is still usable: every update is complete).
    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes from the exit: queue them for the reader.
    pub(crate) fn deliver(&self, bytes: &[u8]) {
        let mut s = self.lock();
        s.read_buf.extend(bytes);
        if let Some(w) = s.read_waker.take() {
            w.wake();
        }
    }

    /// The stream ended (the first end wins); wake the reader and the writer.
    pub(crate) fn finish(&self, ended: Ended) {
        let mut s = self.lock();
        if s.ended.is_none() {
            s.ended = Some(ended);
        }
        // Nothing more will be sent.
        s.write_buf.clear();
        for w in [s.read_waker.take(), s.write_waker.take()]
            .into_iter()
            .flatten()
        {
            w.wake();
        }
    }
}

/// One stream of a circuit (RELAY_BEGIN, connected), as a byte stream.
///
/// - Reads deliver the exit's bytes; end of file when the exit ends the stream with
///   RELAY_END reason DONE; an [`io::Error`] whose inner error is a [`StreamError`] (the END
///   reason, the circuit's or the link's end) otherwise.
/// - Writes are buffered (at most [`WRITE_BUFFER`] bytes) and packaged into DATA cells as the
///   stream and circuit windows allow; `poll_flush` waits until everything written has been
///   handed to the circuit.
/// - Tor streams have no half-close: `poll_shutdown` only flushes. Dropping the stream sends
///   what is buffered, then RELAY_END (DONE).
#[derive(Debug)]
pub struct DataStream {
    /// Shared with the circuit task.
    shared: Arc<StreamShared>,
    /// The stream id on its circuit.
    id: StreamId,
    /// The address the exit connected to, if it said.
    peer: Option<IpAddr>,
}

impl DataStream {
    /// A stream backed by `shared`.
    pub(crate) fn new(shared: Arc<StreamShared>, id: StreamId, peer: Option<IpAddr>) -> Self {
        DataStream { shared, id, peer }
    }

    /// The stream's id on its circuit.
    pub fn stream_id(&self) -> StreamId {
        self.id
    }

    /// The address the exit says it connected to (from RELAY_CONNECTED), if it said.
    pub fn peer_addr(&self) -> Option<IpAddr> {
        self.peer
    }
}

impl AsyncRead for DataStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.shared.lock();
        if !s.read_buf.is_empty() {
            let mut n = 0usize;
            while buf.remaining() > 0 {
                let (front, _) = s.read_buf.as_slices();
                let take = front.len().min(buf.remaining());
                let Some(chunk) = front.get(..take) else {
                    break;
                };
                if chunk.is_empty() {
                    break;
                }
                buf.put_slice(chunk);
                s.read_buf.drain(..take);
                n = n.saturating_add(take);
            }
            let first = s.consumed == 0;
            s.consumed = s.consumed.saturating_add(n);
            drop(s);
            if first && n > 0 {
                self.shared.task.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        match &s.ended {
            Some(Ended::Eof) => Poll::Ready(Ok(())),
            Some(Ended::Error(e)) => Poll::Ready(Err(e.to_io())),
            None => {
                s.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The error for writing to an ended stream.
fn write_error(ended: &Ended) -> io::Error {
    match ended {
        Ended::Eof => io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the stream was ended by the exit",
        ),
        Ended::Error(e) => e.to_io(),
    }
}

impl AsyncWrite for DataStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.shared.lock();
        if let Some(e) = &s.ended {
            return Poll::Ready(Err(write_error(e)));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = WRITE_BUFFER.saturating_sub(s.write_buf.len());
        if room == 0 {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        let was_empty = s.write_buf.is_empty();
        s.write_buf.extend(buf.get(..n).unwrap_or_default());
        drop(s);
        if was_empty {
            self.shared.task.notify_one();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.shared.lock();
        if s.write_buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &s.ended {
            return Poll::Ready(Err(write_error(e)));
        }
        s.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl Drop for DataStream {
    fn drop(&mut self) {
        self.shared.lock().dropped = true;
        self.shared.task.notify_one();
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use onion_cell::relaycell::EndReason;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn stream() -> (DataStream, Arc<StreamShared>, Arc<Notify>) {
        let notify = Arc::new(Notify::new());
        let shared = StreamShared::new(Arc::clone(&notify));
        (
            DataStream::new(Arc::clone(&shared), StreamId(5), None),
            shared,
            notify,
        )
    }

    #[tokio::test]
    async fn reads_buffered_then_eof() {
        let (mut ds, shared, notify) = stream();
        shared.deliver(b"hello ");
        shared.deliver(b"world");
        let mut buf = [0u8; 4];
        assert_eq!(ds.read(&mut buf).await.unwrap(), 4);
        assert_eq!(&buf, b"hell");
        // The first consumption woke the task.
        notify.notified().await;
        assert_eq!(shared.lock().consumed, 4);
        shared.finish(Ended::Eof);
        let mut rest = Vec::new();
        ds.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"o world");
        assert_eq!(shared.lock().consumed, 11);
        // Writing after the end is a broken pipe.
        let e = ds.write(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn read_error_carries_the_end_reason() {
        let (mut ds, shared, _) = stream();
        shared.deliver(b"ab");
        shared.finish(Ended::Error(StreamError::End(EndReason::CONNRESET)));
        let mut buf = Vec::new();
        let e = ds.read_to_end(&mut buf).await.unwrap_err();
        assert_eq!(buf, b"ab", "buffered bytes come first");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        let inner = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<StreamError>())
            .unwrap();
        assert_eq!(inner, &StreamError::End(EndReason::CONNRESET));
    }

    #[tokio::test]
    async fn writes_are_bounded_and_flush_waits() {
        let (mut ds, shared, notify) = stream();
        let big = vec![7u8; WRITE_BUFFER + 100];
        // A write takes what fits.
        let n = ds.write(&big).await.unwrap();
        assert_eq!(n, WRITE_BUFFER);
        notify.notified().await;
        // The buffer is full: the next write and a flush wait.
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), ds.write(b"x"));
        assert!(pending.await.is_err());
        let flush = tokio::time::timeout(std::time::Duration::from_millis(20), ds.flush());
        assert!(flush.await.is_err());
        // The circuit takes everything and wakes the writer.
        {
            let mut s = shared.lock();
            assert_eq!(s.write_buf.len(), WRITE_BUFFER);
            s.write_buf.clear();
            if let Some(w) = s.write_waker.take() {
                w.wake();
            }
        }
        ds.flush().await.unwrap();
        assert_eq!(ds.write(b"xyz").await.unwrap(), 3);
        // `shutdown` only flushes: with 3 bytes buffered it waits.
        let shut = tokio::time::timeout(std::time::Duration::from_millis(20), ds.shutdown());
        assert!(shut.await.is_err());
        drop(ds);
        assert!(shared.lock().dropped);
    }
}

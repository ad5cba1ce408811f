//! [`OpStream`]: one engine stream as a tokio [`AsyncRead`] + [`AsyncWrite`].
//!
//! The bytes live in a small state shared with the engine task:
//! - reading: the engine delivers [`StreamData`](onion_core::engine::Event::StreamData) into
//!   `read_buf`; the reader takes it and counts `consumed`; the engine task reports that
//!   count with `Engine::stream_consumed`, which is what paces the stream SENDMEs. The exit
//!   can never have more than a stream window unread here.
//! - writing: at most [`STREAM_WRITE_BUFFER`] bytes wait in `write_buf`; the engine task hands
//!   them to `Engine::stream_write` as the windows allow (and again on `StreamWritable`).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use onion_core::engine::StreamHandle;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::ClientError;

/// Most bytes written to an [`OpStream`] that wait for the engine to take them.
pub const STREAM_WRITE_BUFFER: usize = 64 * 1024;

/// How a stream ended.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// A clean end (END DONE, or closed): end of file for the reader.
    Eof,
    /// A failure (END reason, circuit death, engine closed).
    Error(ClientError),
}

/// The state a stream shares with the engine task.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Delivered bytes not read yet.
    pub(crate) read_buf: VecDeque<u8>,
    /// The reader waiting for bytes.
    pub(crate) read_waker: Option<Waker>,
    /// Bytes read since the engine task last reported consumption.
    pub(crate) consumed: usize,
    /// Written bytes the engine has not taken yet.
    pub(crate) write_buf: VecDeque<u8>,
    /// The writer waiting for room (or a flush waiting for an empty buffer).
    pub(crate) write_waker: Option<Waker>,
    /// Set once the stream ended.
    pub(crate) ended: Option<Ended>,
    /// The [`OpStream`] was dropped: hand over what is buffered, then close the stream.
    pub(crate) dropped: bool,
}

/// A stream's shared state and the engine task's wake-up.
#[derive(Debug)]
pub(crate) struct StreamShared {
    state: Mutex<StreamState>,
    task: Arc<Notify>,
}

impl StreamShared {
    /// A fresh state for a stream of the engine task woken by `task`.
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
        s.write_buf.clear();
        for w in [s.read_waker.take(), s.write_waker.take()]
            .into_iter()
            .flatten()
        {
            w.wake();
        }
    }
}

/// One stream opened with [`OpClient::connect`](super::OpClient::connect), as a byte stream.
///
/// - Reads deliver the destination's bytes; end of file when the stream ends cleanly; an
///   [`io::Error`] whose inner error is a [`ClientError`] when it fails (END reason, the
///   circuit died, the engine stopped).
/// - Writes are buffered (at most [`STREAM_WRITE_BUFFER`] bytes) and handed to the engine as
///   its windows allow; `poll_flush` waits until the engine took everything.
/// - Tor streams have no half-close: `poll_shutdown` only flushes. Dropping the stream hands
///   over what is buffered, then closes it (RELAY_END DONE).
#[derive(Debug)]
pub struct OpStream {
    shared: Arc<StreamShared>,
    handle: StreamHandle,
}

impl OpStream {
    /// A stream backed by `shared`.
    pub(crate) fn new(shared: Arc<StreamShared>, handle: StreamHandle) -> Self {
        OpStream { shared, handle }
    }

    /// The engine's handle of this stream.
    pub fn handle(&self) -> StreamHandle {
        self.handle
    }
}

impl AsyncRead for OpStream {
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
        Ended::Eof => io::Error::new(io::ErrorKind::BrokenPipe, "the stream has ended"),
        Ended::Error(e) => e.to_io(),
    }
}

impl AsyncWrite for OpStream {
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
        let room = STREAM_WRITE_BUFFER.saturating_sub(s.write_buf.len());
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

impl Drop for OpStream {
    fn drop(&mut self) {
        self.shared.lock().dropped = true;
        self.shared.task.notify_one();
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use onion_core::engine::StreamError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn stream() -> (OpStream, Arc<StreamShared>, Arc<Notify>) {
        let notify = Arc::new(Notify::new());
        let shared = StreamShared::new(Arc::clone(&notify));
        (
            OpStream::new(Arc::clone(&shared), StreamHandle(1)),
            shared,
            notify,
        )
    }

    #[tokio::test]
    async fn reads_count_consumption_then_eof() {
        let (mut s, shared, notify) = stream();
        shared.deliver(b"hello ");
        shared.deliver(b"world");
        let mut buf = [0u8; 4];
        assert_eq!(s.read(&mut buf).await.unwrap(), 4);
        assert_eq!(&buf, b"hell");
        notify.notified().await;
        assert_eq!(shared.lock().consumed, 4);
        shared.finish(Ended::Eof);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"o world");
        assert_eq!(shared.lock().consumed, 11);
        assert_eq!(
            s.write(b"x").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }

    #[tokio::test]
    async fn a_failed_stream_reads_its_error_after_the_data() {
        let (mut s, shared, _) = stream();
        shared.deliver(b"ab");
        shared.finish(Ended::Error(ClientError::Stream(
            StreamError::ConnectionRefused,
        )));
        let mut buf = Vec::new();
        let e = s.read_to_end(&mut buf).await.unwrap_err();
        assert_eq!(buf, b"ab");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let inner = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<ClientError>())
            .unwrap();
        assert_eq!(inner, &ClientError::Stream(StreamError::ConnectionRefused));
    }

    #[tokio::test]
    async fn writes_are_bounded() {
        let (mut s, shared, notify) = stream();
        let big = vec![1u8; STREAM_WRITE_BUFFER + 10];
        assert_eq!(s.write(&big).await.unwrap(), STREAM_WRITE_BUFFER);
        notify.notified().await;
        let more = tokio::time::timeout(std::time::Duration::from_millis(20), s.write(b"x"));
        assert!(more.await.is_err(), "a full buffer makes writes wait");
        {
            let mut st = shared.lock();
            st.write_buf.clear();
            if let Some(w) = st.write_waker.take() {
                w.wake();
            }
        }
        s.flush().await.unwrap();
        drop(s);
        assert!(shared.lock().dropped);
    }
}

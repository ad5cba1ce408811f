//! [`Pipe`]: the byte buffers between one stream's user and the task that drives it, and the
//! tokio [`AsyncRead`] + [`AsyncWrite`] over them. Both streams of this crate are one:
//! [`DataStream`](crate::DataStream) (driven by a circuit task) and
//! [`OpStream`](crate::driver::OpStream) (driven by the engine task); they differ only in the
//! error a failed stream reports ([`PipeError`]) and in what they say about themselves.
//!
//! The state shared with the task ([`PipeShared`]):
//! - reading: the task [`deliver`](PipeShared::deliver)s bytes into `read_buf`; the reader
//!   takes them and counts `consumed`, which the task reports to the core (what paces the
//!   stream SENDMEs, so the exit can never have more than a stream window unread here). The
//!   task is woken when `consumed` leaves zero.
//! - writing: at most [`WRITE_BUFFER`] bytes wait in `write_buf`; beyond that `poll_write` is
//!   pending until the task takes bytes and wakes `write_waker`. The task is woken when
//!   `write_buf` leaves empty.
//! - the end: [`finish`](PipeShared::finish) (the first end wins) wakes the reader and the
//!   writer; dropping the [`Pipe`] sets `dropped` and wakes the task, which hands over what is
//!   buffered and then closes the stream.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Most bytes written to a stream that wait for its task to take them.
pub(crate) const WRITE_BUFFER: usize = 64 * 1024;

/// The error a failed stream reports to its reader and writer.
pub(crate) trait PipeError {
    /// The message of the broken-pipe error for writing to a stream that ended cleanly.
    const ENDED: &'static str;

    /// This error as an [`io::Error`] (its inner error is the error itself).
    fn to_io(&self) -> io::Error;
}

/// How a stream ended, as its reader and writer see it.
#[derive(Debug, Clone)]
pub(crate) enum Ended<E> {
    /// A clean end (RELAY_END DONE): end of file for the reader, broken pipe for the writer.
    Eof,
    /// A failure.
    Error(E),
}

impl<E: PipeError> Ended<E> {
    /// The error for writing to the ended stream.
    fn write_error(&self) -> io::Error {
        match self {
            Ended::Eof => io::Error::new(io::ErrorKind::BrokenPipe, E::ENDED),
            Ended::Error(e) => e.to_io(),
        }
    }
}

/// The state a stream shares with its task.
#[derive(Debug)]
pub(crate) struct PipeState<E> {
    /// Delivered bytes not read yet.
    pub(crate) read_buf: VecDeque<u8>,
    /// The reader waiting for bytes.
    pub(crate) read_waker: Option<Waker>,
    /// Bytes read since the task last reported consumption.
    pub(crate) consumed: usize,
    /// Written bytes the task has not taken yet.
    pub(crate) write_buf: VecDeque<u8>,
    /// The writer waiting for room (or a flush waiting for an empty buffer).
    pub(crate) write_waker: Option<Waker>,
    /// Set once the stream ended.
    pub(crate) ended: Option<Ended<E>>,
    /// The [`Pipe`] was dropped: hand over what is buffered, then close the stream.
    pub(crate) dropped: bool,
}

impl<E> Default for PipeState<E> {
    fn default() -> Self {
        PipeState {
            read_buf: VecDeque::new(),
            read_waker: None,
            consumed: 0,
            write_buf: VecDeque::new(),
            write_waker: None,
            ended: None,
            dropped: false,
        }
    }
}

/// A stream's shared state and its task's wake-up.
#[derive(Debug)]
pub(crate) struct PipeShared<E> {
    /// The state.
    state: Mutex<PipeState<E>>,
    /// Wakes the task.
    task: Arc<Notify>,
}

impl<E> PipeShared<E> {
    /// A fresh state for a stream of the task woken by `task`.
    pub(crate) fn new(task: Arc<Notify>) -> Arc<Self> {
        Arc::new(PipeShared {
            state: Mutex::new(PipeState::default()),
            task,
        })
    }

    /// Lock the state (a poisoned lock is still usable: every update is complete).
    pub(crate) fn lock(&self) -> MutexGuard<'_, PipeState<E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes from the other end: queue them for the reader.
    pub(crate) fn deliver(&self, bytes: &[u8]) {
        let mut s = self.lock();
        s.read_buf.extend(bytes);
        if let Some(w) = s.read_waker.take() {
            w.wake();
        }
    }

    /// The stream ended (the first end wins); wake the reader and the writer.
    pub(crate) fn finish(&self, ended: Ended<E>) {
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

/// The user's end of a stream: reads take delivered bytes, writes fill the bounded write
/// buffer, `poll_flush` waits until the task took everything, `poll_shutdown` only flushes
/// (Tor streams have no half-close). Dropping it sets `dropped` and wakes the task.
#[derive(Debug)]
pub(crate) struct Pipe<E> {
    /// Shared with the task.
    shared: Arc<PipeShared<E>>,
}

impl<E> Pipe<E> {
    /// The user's end of `shared`.
    pub(crate) fn new(shared: Arc<PipeShared<E>>) -> Self {
        Pipe { shared }
    }
}

impl<E: PipeError> AsyncRead for Pipe<E> {
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

impl<E: PipeError> AsyncWrite for Pipe<E> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.shared.lock();
        if let Some(e) = &s.ended {
            return Poll::Ready(Err(e.write_error()));
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
            return Poll::Ready(Err(e.write_error()));
        }
        s.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl<E> Drop for Pipe<E> {
    fn drop(&mut self) {
        self.shared.lock().dropped = true;
        self.shared.task.notify_one();
    }
}

/// `impl AsyncRead + AsyncWrite for $ty` by its field `pipe` (a [`Pipe`]).
macro_rules! pipe_io {
    ($ty:ty) => {
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.pipe).poll_read(cx, buf)
            }
        }

        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.pipe).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.pipe).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.pipe).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use pipe_io;

#[cfg(test)]
mod test {
    use super::*;
    use crate::error::StreamError;
    use onion_cell::relaycell::EndReason;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pipe() -> (Pipe<StreamError>, Arc<PipeShared<StreamError>>, Arc<Notify>) {
        let notify = Arc::new(Notify::new());
        let shared = PipeShared::new(Arc::clone(&notify));
        (Pipe::new(Arc::clone(&shared)), shared, notify)
    }

    #[tokio::test]
    async fn reads_count_consumption_then_eof() {
        let (mut p, shared, notify) = pipe();
        shared.deliver(b"hello ");
        shared.deliver(b"world");
        let mut buf = [0u8; 4];
        assert_eq!(p.read(&mut buf).await.unwrap(), 4);
        assert_eq!(&buf, b"hell");
        // The first consumption woke the task.
        notify.notified().await;
        assert_eq!(shared.lock().consumed, 4);
        shared.finish(Ended::Eof);
        let mut rest = Vec::new();
        p.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"o world");
        assert_eq!(shared.lock().consumed, 11);
        // Writing after the end is a broken pipe.
        let e = p.write(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(e.to_string(), StreamError::ENDED);
    }

    #[tokio::test]
    async fn a_failed_stream_reads_its_error_after_the_data() {
        let (mut p, shared, _) = pipe();
        shared.deliver(b"ab");
        shared.finish(Ended::Error(StreamError::End(EndReason::CONNRESET)));
        let mut buf = Vec::new();
        let e = p.read_to_end(&mut buf).await.unwrap_err();
        assert_eq!(buf, b"ab", "buffered bytes come first");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        let inner = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<StreamError>())
            .unwrap();
        assert_eq!(inner, &StreamError::End(EndReason::CONNRESET));
        // The writer sees the same error.
        let e = p.write(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn writes_are_bounded_and_flush_waits() {
        let (mut p, shared, notify) = pipe();
        let big = vec![7u8; WRITE_BUFFER + 100];
        // A write takes what fits.
        let n = p.write(&big).await.unwrap();
        assert_eq!(n, WRITE_BUFFER);
        notify.notified().await;
        // The buffer is full: the next write and a flush wait.
        let pending = tokio::time::timeout(Duration::from_millis(20), p.write(b"x"));
        assert!(pending.await.is_err());
        let flush = tokio::time::timeout(Duration::from_millis(20), p.flush());
        assert!(flush.await.is_err());
        // The task takes everything and wakes the writer.
        {
            let mut s = shared.lock();
            assert_eq!(s.write_buf.len(), WRITE_BUFFER);
            s.write_buf.clear();
            if let Some(w) = s.write_waker.take() {
                w.wake();
            }
        }
        p.flush().await.unwrap();
        assert_eq!(p.write(b"xyz").await.unwrap(), 3);
        // `shutdown` only flushes: with 3 bytes buffered it waits.
        let shut = tokio::time::timeout(Duration::from_millis(20), p.shutdown());
        assert!(shut.await.is_err());
        drop(p);
        assert!(shared.lock().dropped);
    }
}

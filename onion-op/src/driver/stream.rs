//! [`OpStream`]: one engine stream as a tokio [`AsyncRead`] + [`AsyncWrite`].
//!
//! The bytes live in a small state shared with the engine task:
//! - reading: the engine delivers [`StreamData`](onion_core::engine::Event::StreamData) into
//!   `read_buf`; the reader takes it and counts `consumed`; the engine task reports that
//!   count with `Engine::stream_consumed`, which is what paces the stream SENDMEs. The exit
//!   can never have more than a stream window unread here.
//! - writing: at most [`STREAM_WRITE_BUFFER`] bytes wait in `write_buf`; the engine task hands
//!   them to `Engine::stream_write` as the windows allow (and again on `StreamWritable`).

use std::io;
use std::sync::Arc;

use onion_core::engine::StreamHandle;

use super::ClientError;
use crate::pipe::{self, Pipe, PipeError, PipeShared};

/// Most bytes written to an [`OpStream`] that wait for the engine to take them.
pub const STREAM_WRITE_BUFFER: usize = pipe::WRITE_BUFFER;

/// How a stream ended: cleanly (END DONE, or closed: end of file for the reader), or with a
/// failure (END reason, circuit death, engine closed).
pub(crate) type Ended = pipe::Ended<ClientError>;

/// The state a stream shares with the engine task.
pub(crate) type StreamShared = PipeShared<ClientError>;

impl PipeError for ClientError {
    const ENDED: &'static str = "the stream has ended";

    fn to_io(&self) -> io::Error {
        ClientError::to_io(self)
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
    /// The bytes, shared with the engine task.
    pipe: Pipe<ClientError>,
    /// The engine's handle of this stream.
    handle: StreamHandle,
}

impl OpStream {
    /// A stream backed by `shared`.
    pub(crate) fn new(shared: Arc<StreamShared>, handle: StreamHandle) -> Self {
        OpStream {
            pipe: Pipe::new(shared),
            handle,
        }
    }

    /// The engine's handle of this stream.
    pub fn handle(&self) -> StreamHandle {
        self.handle
    }
}

pipe::pipe_io!(OpStream);

#[cfg(test)]
mod test {
    use super::*;
    use onion_core::engine::StreamError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    /// The byte logic is the pipe's (tested there); this is the stream and its error type.
    #[tokio::test]
    async fn an_op_stream_fails_with_its_client_error() {
        let shared = StreamShared::new(Arc::new(Notify::new()));
        let mut s = OpStream::new(Arc::clone(&shared), StreamHandle(1));
        assert_eq!(s.handle(), StreamHandle(1));
        shared.deliver(b"ab");
        let refused = ClientError::Stream(StreamError::ConnectionRefused);
        shared.finish(Ended::Error(refused.clone()));
        let mut buf = Vec::new();
        let e = s.read_to_end(&mut buf).await.unwrap_err();
        assert_eq!(buf, b"ab");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<ClientError>());
        assert_eq!(inner, Some(&refused));
        let e = s.write(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        drop(s);
        assert!(shared.lock().dropped);
    }
}

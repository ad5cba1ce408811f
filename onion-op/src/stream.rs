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

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use onion_cell::relaycell::StreamId;

use crate::error::StreamError;
use crate::pipe::{self, Pipe, PipeError, PipeShared};

/// Most bytes written to a [`DataStream`] that wait for the circuit to package them.
pub const WRITE_BUFFER: usize = pipe::WRITE_BUFFER;

/// How a stream ended, as its reader and writer see it: RELAY_END with reason DONE (end of
/// file for the reader, broken pipe for the writer), or anything else.
pub(crate) type Ended = pipe::Ended<StreamError>;

/// The state a stream shares with its circuit task.
pub(crate) type StreamShared = PipeShared<StreamError>;

impl PipeError for StreamError {
    const ENDED: &'static str = "the stream was ended by the exit";

    fn to_io(&self) -> io::Error {
        StreamError::to_io(self)
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
    /// The bytes, shared with the circuit task.
    pipe: Pipe<StreamError>,
    /// The stream id on its circuit.
    id: StreamId,
    /// The address the exit connected to, if it said.
    peer: Option<IpAddr>,
}

impl DataStream {
    /// A stream backed by `shared`.
    pub(crate) fn new(shared: Arc<StreamShared>, id: StreamId, peer: Option<IpAddr>) -> Self {
        DataStream {
            pipe: Pipe::new(shared),
            id,
            peer,
        }
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

pipe::pipe_io!(DataStream);

#[cfg(test)]
mod test {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    /// The byte logic is the pipe's (tested there); this is the stream around it.
    #[tokio::test]
    async fn a_data_stream_is_its_pipe() {
        let notify = Arc::new(Notify::new());
        let shared = StreamShared::new(Arc::clone(&notify));
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        let mut ds = DataStream::new(Arc::clone(&shared), StreamId(5), peer);
        assert_eq!(ds.stream_id(), StreamId(5));
        assert_eq!(ds.peer_addr(), peer);
        assert_eq!(ds.write(b"req").await.unwrap(), 3);
        notify.notified().await;
        assert_eq!(shared.lock().write_buf, [b'r', b'e', b'q']);
        shared.deliver(b"answer");
        shared.finish(Ended::Eof);
        let mut got = Vec::new();
        ds.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        let e = ds.write(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(e.to_string(), "the stream was ended by the exit");
        drop(ds);
        assert!(shared.lock().dropped);
    }
}

//! Reading and writing frames on tokio streams (feature `tokio`).
//!
//! [`FrameReader`] is the one way frames are read, on every stream of both
//! sides: it keeps the bytes of a frame it has not finished in a buffer of its
//! own and parses them with [`decode_frame`], the decoder the fuzz targets and
//! property tests exercise. Because the partial frame lives in the reader and
//! not in a future, a read may be dropped at any point (a `tokio::select!`
//! whose other branch won, a timeout) and the next read carries on where it
//! stopped: nothing is lost and the stream never falls out of step.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{decode_frame, encode_frame, frame_len, FrameError, Validate};
use crate::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// Buffer capacity a [`FrameReader`] keeps between frames; a larger frame's
/// buffer (a hello can be up to [`MAX_FRAME_LEN`]) is given back once it is
/// parsed, so a long-lived control stream holds only this much when idle.
pub const KEPT_BUFFER: usize = 4 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream ended cleanly before the first byte of a frame.
    #[error("stream closed")]
    Closed,
    /// The bytes are not a valid frame, or the stream ended inside one
    /// ([`FrameError::Truncated`]).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream itself failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads frames from `R`, buffering the frame in progress.
///
/// **Cancel-safe**: [`read_frame`](Self::read_frame) may be dropped before it
/// completes (as a `tokio::select!` branch that lost, or under
/// `tokio::time::timeout`) without losing data; the bytes already read stay
/// in the reader and the next call resumes the same frame.
///
/// The reader never reads past the end of the frame it is parsing, so after a
/// frame the stream is exactly at the next byte: a stream that carries a
/// frame and then raw bytes (a stream header, then the session) can be taken
/// back with [`into_inner`](Self::into_inner) without losing any of them.
/// The buffer holds at most one frame, [`FRAME_HEADER_LEN`] +
/// [`MAX_FRAME_LEN`] bytes; a longer length is refused from its header,
/// before any body is read.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    /// `buf[..filled]` is the part of the current frame read so far; bytes
    /// past `filled` are scratch space (a read cancelled mid-way leaves them).
    buf: Vec<u8>,
    filled: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader with nothing buffered; `inner` may be `&mut` a stream.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
            filled: 0,
        }
    }

    /// Reads the next frame and decodes it as `T`.
    ///
    /// Errors: [`ReadError::Closed`] when the stream ends between frames;
    /// [`FrameError::Truncated`] when it ends inside one;
    /// [`FrameError::Oversize`] for a length over [`MAX_FRAME_LEN`] (the
    /// stream is then out of step: every later call fails the same way);
    /// [`FrameError::Malformed`] or [`FrameError::Invalid`] for a whole frame
    /// that does not parse or breaks a limit (that frame is consumed).
    ///
    /// Cancel-safe: see [`FrameReader`].
    pub async fn read_frame<T: DeserializeOwned + Validate>(&mut self) -> Result<T, ReadError> {
        loop {
            match decode_frame::<T>(&self.buf[..self.filled]) {
                Ok(Some((msg, used))) => {
                    self.consume(used);
                    return Ok(msg);
                }
                // Incomplete: read more below.
                Ok(None) => {}
                Err(e @ FrameError::Oversize { .. }) => return Err(e.into()),
                Err(e) => {
                    // A whole frame that is not valid: skip it, so the stream
                    // stays in step for a caller that carries on.
                    self.consume(self.filled);
                    return Err(e.into());
                }
            }
            let end = self.filled + self.missing()?;
            debug_assert!(end <= FRAME_HEADER_LEN + MAX_FRAME_LEN);
            if self.buf.len() < end {
                self.buf.resize(end, 0);
            }
            // The only await: if it is cancelled, no byte was taken from
            // the stream, and `filled` still says what the buffer holds.
            let n = self.inner.read(&mut self.buf[self.filled..end]).await?;
            if n == 0 {
                return Err(if self.filled == 0 {
                    ReadError::Closed
                } else {
                    FrameError::Truncated.into()
                });
            }
            self.filled += n;
        }
    }

    /// Bytes still missing from the frame in progress, as far as its header
    /// tells (the rest of the header, else the rest of the body).
    fn missing(&self) -> Result<usize, FrameError> {
        match self.buf[..self.filled].first_chunk::<FRAME_HEADER_LEN>() {
            None => Ok(FRAME_HEADER_LEN - self.filled),
            Some(header) => Ok(FRAME_HEADER_LEN + frame_len(*header)? - self.filled),
        }
    }

    /// Drops the first `n` buffered bytes, and a large buffer with them.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
        if self.filled == 0 && self.buf.capacity() > KEPT_BUFFER {
            self.buf = Vec::new();
        }
    }
}

impl<R> FrameReader<R> {
    /// The stream, for reads that are not frames. Between frames the reader
    /// holds no bytes; reading from it while a frame is half read would tear
    /// that frame.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Bytes of a frame read so far but not yet returned (zero between frames).
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// The stream back. Between frames nothing is lost (the reader never
    /// reads ahead); the bytes of a half-read frame are dropped.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Why a frame could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The message breaks a limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes one frame. Not cancel-safe (a dropped write may leave part of the
/// frame sent); callers that race it against something else end the stream
/// when the other branch wins.
pub async fn write_frame<T, W>(w: &mut W, msg: &T) -> Result<(), WriteError>
where
    T: Serialize + Validate,
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf)?;
    w.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::task::{Context, Poll, Waker};

    use tokio::io::ReadBuf;

    use super::*;
    use crate::tunnel::{Control, StreamHeader, StreamReply};

    fn frame<T: Serialize + Validate>(msg: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(msg, &mut out).unwrap();
        out
    }

    fn hello_ish() -> Vec<Control> {
        vec![
            Control::Heartbeat { seq: 1 },
            Control::Drain {
                reason: "r".repeat(300),
            },
            Control::HeartbeatAck { seq: u64::MAX },
        ]
    }

    /// A stream that hands out its chunks as they were written (a read gets
    /// at most the rest of one chunk) and, when `stall` is set, is not ready
    /// before each chunk: every byte arrives on a poll of its own.
    struct Chunks {
        chunks: VecDeque<Vec<u8>>,
        stall: bool,
        stalled: bool,
    }

    impl Chunks {
        fn new(chunks: impl IntoIterator<Item = Vec<u8>>, stall: bool) -> Self {
            Chunks {
                chunks: chunks.into_iter().collect(),
                stall,
                stalled: false,
            }
        }

        fn bytes(bytes: &[u8], stall: bool) -> Self {
            Self::new(bytes.iter().map(|b| vec![*b]), stall)
        }
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.stall && !self.stalled {
                self.stalled = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.stalled = false;
            let Some(chunk) = self.chunks.front_mut() else {
                return Poll::Ready(Ok(()));
            };
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.chunks.pop_front();
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Polls `f` once, as a `select!` does before another branch wins.
    fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
        let f = pin!(f);
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Drives `f` to completion (every stream here makes progress on each poll).
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                return out;
            }
        }
    }

    #[test]
    fn dropping_the_read_between_bytes_loses_nothing() {
        let msgs = hello_ish();
        let bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
        let mut reader = FrameReader::new(Chunks::bytes(&bytes, true));
        let mut got = Vec::new();
        let mut dropped = 0;
        while got.len() < msgs.len() {
            // Each call is polled once and then dropped unless it finished.
            match poll_once(reader.read_frame::<Control>()) {
                Poll::Ready(msg) => got.push(msg.unwrap()),
                Poll::Pending => dropped += 1,
            }
        }
        assert_eq!(got, msgs);
        assert!(dropped >= bytes.len(), "only {dropped} reads were dropped");
        assert!(matches!(
            block_on(reader.read_frame::<Control>()),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn two_frames_in_one_chunk_are_two_frames() {
        let msgs = hello_ish();
        let both: Vec<u8> = msgs[..2].iter().flat_map(frame).collect();
        let mut reader = FrameReader::new(Chunks::new([both], false));
        assert_eq!(block_on(reader.read_frame::<Control>()).unwrap(), msgs[0]);
        assert_eq!(block_on(reader.read_frame::<Control>()).unwrap(), msgs[1]);
        assert!(matches!(
            block_on(reader.read_frame::<Control>()),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn a_frame_split_across_reads_is_whole() {
        let msg = StreamHeader {
            stream: "s1".into(),
            service: "db".into(),
            user: "alice".into(),
            client_addr: "192.0.2.1:4000".into(),
        };
        let bytes = frame(&msg);
        for cut in [
            1,
            FRAME_HEADER_LEN - 1,
            FRAME_HEADER_LEN,
            FRAME_HEADER_LEN + 1,
            bytes.len() - 1,
        ] {
            let chunks = [bytes[..cut].to_vec(), bytes[cut..].to_vec()];
            let mut reader = FrameReader::new(Chunks::new(chunks, true));
            assert_eq!(
                block_on(reader.read_frame::<StreamHeader>()).unwrap(),
                msg,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bytes_after_a_frame_stay_in_the_stream() {
        let mut bytes = frame(&StreamReply::Accept);
        bytes.extend_from_slice(b"SSH-2.0-OpenSSH_9.9\r\n");
        let mut reader = FrameReader::new(&bytes[..]);
        assert_eq!(
            block_on(reader.read_frame::<StreamReply>()).unwrap(),
            StreamReply::Accept
        );
        assert_eq!(reader.buffered(), 0);
        let mut stream = reader.into_inner();
        let mut rest = Vec::new();
        block_on(stream.read_to_end(&mut rest)).unwrap();
        assert_eq!(rest, b"SSH-2.0-OpenSSH_9.9\r\n");
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_truncated() {
        let bytes = frame(&Control::Heartbeat { seq: 7 });
        for cut in [1, FRAME_HEADER_LEN, bytes.len() - 1] {
            let mut reader = FrameReader::new(&bytes[..cut]);
            let err = block_on(reader.read_frame::<Control>()).unwrap_err();
            assert!(
                matches!(err, ReadError::Frame(FrameError::Truncated)),
                "cut at {cut}: {err}"
            );
        }
        let mut empty = FrameReader::new(&b""[..]);
        assert!(matches!(
            block_on(empty.read_frame::<Control>()),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn an_oversize_length_is_refused_before_its_body_is_read() {
        let mut bytes = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let mut reader = FrameReader::new(&bytes[..]);
        let err = block_on(reader.read_frame::<Control>()).unwrap_err();
        assert!(
            matches!(err, ReadError::Frame(FrameError::Oversize { .. })),
            "{err}"
        );
        assert_eq!(reader.buffered(), FRAME_HEADER_LEN, "no body byte was read");
        assert!(reader.buf.len() <= FRAME_HEADER_LEN);
        // The largest allowed frame still fits.
        let mut max = (MAX_FRAME_LEN as u32).to_be_bytes().to_vec();
        max.resize(FRAME_HEADER_LEN + MAX_FRAME_LEN, b' ');
        let mut reader = FrameReader::new(&max[..]);
        let err = block_on(reader.read_frame::<Control>()).unwrap_err();
        assert!(
            matches!(err, ReadError::Frame(FrameError::Malformed(_))),
            "{err}"
        );
        assert_eq!(reader.buffered(), 0, "a bad whole frame is consumed");
        assert!(
            reader.buf.capacity() <= KEPT_BUFFER,
            "the large buffer was given back"
        );
    }

    #[test]
    fn a_bad_frame_is_skipped_and_the_next_one_read() {
        let mut bytes = 5u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{!!!}");
        bytes.extend_from_slice(&frame(&Control::Heartbeat { seq: 2 }));
        let mut reader = FrameReader::new(&bytes[..]);
        let err = block_on(reader.read_frame::<Control>()).unwrap_err();
        assert!(
            matches!(err, ReadError::Frame(FrameError::Malformed(_))),
            "{err}"
        );
        assert_eq!(
            block_on(reader.read_frame::<Control>()).unwrap(),
            Control::Heartbeat { seq: 2 }
        );
    }
}

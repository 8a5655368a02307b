//! Reading and writing frames on tokio streams (feature `tokio`).

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{decode_body, encode_frame, frame_len, FrameError, Validate};
use crate::limits::FRAME_HEADER_LEN;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream ended cleanly before the first byte of a frame.
    #[error("stream closed")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. The body buffer is allocated only after the length has
/// been checked against the limit.
pub async fn read_frame<T, R>(r: &mut R) -> Result<T, ReadError>
where
    T: DeserializeOwned + Validate,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < FRAME_HEADER_LEN {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                ReadError::Closed
            } else {
                FrameError::Truncated.into()
            });
        }
        got += n;
    }
    let len = frame_len(header)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ReadError::Frame(FrameError::Truncated),
        _ => ReadError::Io(e),
    })?;
    Ok(decode_body(&body)?)
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes one frame.
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

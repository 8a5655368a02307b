//! The admin socket: a Unix socket in the data dir (mode 0600) on which a
//! running relay serves admin commands, and the CLI's side of it. One
//! connection carries one command; the output streams back through a
//! bounded queue, so a slow reader slows the command instead of filling
//! the relay's memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sallyport_proto::io::{write_frame, FrameReader, ReadError, WriteError};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::commands::{execute_as, AdminCtx, Sink};
use super::protocol::{ReplyFrame, Request, MAX_ERROR_LEN, OUTPUT_CHUNK};
use crate::audit::Actor;

/// Pieces of output a command may be ahead of the socket: a slow reader
/// slows the command down instead of filling the relay's memory.
pub const REPLY_QUEUE: usize = 4;
/// Admin commands the relay runs at once; more connections wait.
pub const MAX_ADMIN_COMMANDS: usize = 8;
/// How long the relay waits for the request, and for the CLI to take each
/// piece of the answer.
pub const ADMIN_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the CLI waits for each piece of the answer: longer, since a
/// filtered `audit list` or a `recording export` may read millions of
/// events before its first line.
pub const ADMIN_REPLY_WAIT: Duration = Duration::from_secs(15 * 60);

/// Cuts output into pieces of at most [`OUTPUT_CHUNK`] bytes (on character
/// boundaries) and hands them to the socket writer through a queue of
/// [`REPLY_QUEUE`]. For blocking threads only.
struct ChunkSink {
    buf: String,
    tx: tokio::sync::mpsc::Sender<String>,
}

impl ChunkSink {
    fn flush(&mut self) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, String::with_capacity(OUTPUT_CHUNK));
        self.tx
            .blocking_send(piece)
            .map_err(|_| "the admin client went away".to_owned())
    }
}

impl Sink for ChunkSink {
    fn write(&mut self, mut text: &str) -> Result<(), String> {
        while !text.is_empty() {
            let mut take = text.len().min(OUTPUT_CHUNK - self.buf.len());
            while !text.is_char_boundary(take) {
                take -= 1;
            }
            self.buf.push_str(&text[..take]);
            text = &text[take..];
            // Full, or the next character does not fit.
            if !text.is_empty() || self.buf.len() == OUTPUT_CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Serves admin commands on the Unix socket until `shutdown`, at most
/// [`MAX_ADMIN_COMMANDS`] at once; returns when the last one has stopped.
pub async fn serve_socket(
    path: PathBuf,
    ctx: Arc<AdminCtx>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let commands = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_COMMANDS));
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.map_err(std::io::Error::other)?,
            _ = shutdown.cancelled() => break,
        };
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = shutdown.cancelled() => break,
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        commands.spawn(async move {
            let _slot = slot;
            if let Err(e) = serve_one(stream, ctx, shutdown).await {
                tracing::warn!(error = %e, "admin socket request failed");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    commands.close();
    commands.wait().await;
    Ok(())
}

/// Why serving one admin connection stopped early.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("the admin client sent no request within {ADMIN_IO_TIMEOUT:?}")]
    RequestTimeout,
    #[error("the admin client took no output for {ADMIN_IO_TIMEOUT:?}")]
    WriteTimeout,
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("the admin command failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

async fn serve_one(
    stream: UnixStream,
    ctx: Arc<AdminCtx>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    // Who is on the other end, from the kernel (SO_PEERCRED), not from
    // anything the client says: the audit events of the command name them.
    let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
    let (r, mut w) = stream.into_split();
    let mut r = FrameReader::new(r);
    let read = tokio::time::timeout(ADMIN_IO_TIMEOUT, r.read_frame::<Request>());
    let req = tokio::select! {
        read = read => match read {
            Ok(Ok(req)) => req,
            Ok(Err(e)) => {
                let error = Some(cut(format!("bad admin request: {e}"), MAX_ERROR_LEN));
                return Ok(write_frame(&mut w, &ReplyFrame::Done { error }).await?);
            }
            Err(_) => return Err(ServeError::RequestTimeout),
        },
        _ = shutdown.cancelled() => return Ok(()),
    };
    // The command runs on a blocking thread (password hashing, sled) and
    // hands its output over in pieces; it waits while the queue is full,
    // and stops when this side gives up and drops the receiver.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(REPLY_QUEUE);
    let command = tokio::task::spawn_blocking(move || {
        let mut sink = ChunkSink {
            buf: String::new(),
            tx,
        };
        let by = match peer_uid {
            Some(uid) => Actor::cli(uid),
            None => Actor::Cli {
                os_user: "unknown (no peer credentials)".into(),
                uid: u32::MAX,
            },
        };
        execute_as(&ctx, &by, req, &mut sink).and_then(|()| sink.flush())
    });
    loop {
        let text = tokio::select! {
            text = rx.recv() => match text {
                Some(text) => text,
                None => break,
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let piece = ReplyFrame::Output { text };
        tokio::select! {
            r = tokio::time::timeout(ADMIN_IO_TIMEOUT, write_frame(&mut w, &piece)) => {
                r.map_err(|_| ServeError::WriteTimeout)??
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
    let error = command.await?.err().map(|e| cut(e, MAX_ERROR_LEN));
    write_frame(&mut w, &ReplyFrame::Done { error }).await?;
    w.shutdown().await.map_err(|e| ServeError::Write(e.into()))
}

/// Why a command sent to the running relay did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The command ran and failed; the relay's words.
    #[error("{0}")]
    Failed(String),
    /// Its output could not be written here.
    #[error("{0}")]
    Output(String),
    #[error("the running relay did not answer the admin command within {ADMIN_REPLY_WAIT:?}")]
    Timeout,
    #[error(
        "the running relay's answer is not understood ({0}); is it an older version? restart it"
    )]
    Protocol(#[from] ReadError),
    #[error("cannot send the admin command to the running relay: {0}")]
    Send(#[from] WriteError),
}

/// Sends `req` to a running relay and writes its output to `out` as it
/// arrives; `None` when no relay listens on the socket.
pub async fn send_to_running(
    data_dir: &Path,
    req: &Request,
    out: &mut dyn Sink,
) -> Option<Result<(), AdminError>> {
    let stream = UnixStream::connect(socket_path(data_dir)).await.ok()?;
    Some(
        async {
            let (r, mut w) = stream.into_split();
            let mut r = FrameReader::new(r);
            write_frame(&mut w, req).await?;
            loop {
                let frame = tokio::time::timeout(ADMIN_REPLY_WAIT, r.read_frame())
                    .await
                    .map_err(|_| AdminError::Timeout)??;
                match frame {
                    ReplyFrame::Output { text } => out.write(&text).map_err(AdminError::Output)?,
                    ReplyFrame::Done { error: None } => return Ok(()),
                    ReplyFrame::Done { error: Some(e) } => return Err(AdminError::Failed(e)),
                }
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::protocol::MAX_MESSAGE_LEN;

    #[test]
    fn output_is_cut_into_bounded_pieces_on_character_boundaries() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let mut sink = ChunkSink {
            buf: String::new(),
            tx,
        };
        let text = "é€x".repeat(OUTPUT_CHUNK / 3);
        sink.write(&text).unwrap();
        sink.write("\u{1b}\n").unwrap();
        sink.flush().unwrap();
        drop(sink);
        let mut whole = String::new();
        let mut pieces = 0;
        while let Ok(piece) = rx.try_recv() {
            assert!(piece.len() <= OUTPUT_CHUNK);
            let mut frame = Vec::new();
            sallyport_proto::frame::encode_frame(
                &ReplyFrame::Output {
                    text: piece.clone(),
                },
                &mut frame,
            )
            .unwrap();
            assert!(frame.len() <= MAX_MESSAGE_LEN + 4);
            whole.push_str(&piece);
            pieces += 1;
        }
        assert_eq!(whole, format!("{text}\u{1b}\n"));
        assert!(pieces >= 2, "{pieces}");
    }

    #[test]
    fn a_piece_of_control_characters_still_fits_a_frame() {
        let mut frame = Vec::new();
        let text = "\u{1}".repeat(OUTPUT_CHUNK);
        sallyport_proto::frame::encode_frame(&ReplyFrame::Output { text }, &mut frame).unwrap();
        assert!(frame.len() <= MAX_MESSAGE_LEN + 4);
    }

    #[test]
    fn a_reader_that_went_away_stops_the_command() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let mut sink = ChunkSink {
            buf: String::new(),
            tx,
        };
        assert!(sink.write(&"x".repeat(OUTPUT_CHUNK + 1)).is_err());
    }
}

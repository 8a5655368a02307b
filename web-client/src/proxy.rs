//! `sallyport proxy`: standard input and output bridged to a session, for
//! OpenSSH's ProxyCommand. The end of stdin is sent as `eof` (the session's
//! write side closes, reads go on); the session's `eof` (sshd's side has
//! ended) closes stdout and ends the client's side too, so the proxy exits
//! even if whoever started it keeps stdin open.

use std::io::Write as _;
use std::os::fd::FromRawFd as _;

use futures::{SinkExt as _, StreamExt as _};
use sallyport_proto::client::Control;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::api::Session;
use crate::ClientError;

/// Chunks queued for stdout before the session stops reading (backpressure).
const STDOUT_QUEUE: usize = 16;
/// Read size from stdin (one WebSocket message each); below the message limit.
const STDIN_CHUNK: usize = 64 * 1024;

fn lost(e: impl std::fmt::Display) -> ClientError {
    ClientError::Relay(format!("session lost: {e}"))
}

/// Chunks read from stdin and not yet sent (backpressure on the reader).
const STDIN_QUEUE: usize = 4;

/// Reads stdin on a thread of its own, in chunks of up to [`STDIN_CHUNK`];
/// an empty chunk is its end. A thread, not tokio's stdin: a read that
/// never returns (stdin left open by ssh) must not keep the process from
/// exiting once the session is over; the thread ends with the process.
fn read_stdin() -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(STDIN_QUEUE);
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            let chunk = stdin.read(&mut buf).map(|n| buf[..n].to_vec());
            let end = !matches!(&chunk, Ok(c) if !c.is_empty());
            if tx.blocking_send(chunk).is_err() || end {
                return;
            }
        }
    });
    rx
}

/// Runs the session until the relay has closed it (or it fails). The
/// client's half runs until stdin ends or the server's side has ended,
/// whichever is first, and then sends `eof`; once the relay closes the
/// session there is nowhere left to send, so the proxy ends even if stdin
/// stays open.
pub async fn run(ws: Session) -> Result<(), ClientError> {
    let (mut ws_tx, mut ws_rx) = ws.split();

    // stdout is written by one thread that owns fd 1. `None` (the
    // session's `eof`) closes it, so the reader (ssh) sees end-of-stream
    // exactly when the session's output ends, while stdin may stay open.
    // A session that fails instead leaves fd 1 open until the process
    // exits: ssh kills its ProxyCommand once it sees end-of-stream, and the
    // reason, printed after this returns, must come first.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(STDOUT_QUEUE);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: fd 1 is open for the life of the process, and nothing else
        // in this program writes to it once the proxy runs: this File is its
        // only owner from here on, and closes it when the output ends.
        let mut stdout = unsafe { std::fs::File::from_raw_fd(1) };
        while let Some(chunk) = out_rx.blocking_recv() {
            match chunk {
                Some(chunk) => stdout.write_all(&chunk)?,
                None => return Ok(()),
            }
        }
        // Failed: the process exit closes fd 1, after the reason.
        std::mem::forget(stdout);
        Ok(())
    });

    let mut stdin = read_stdin();
    // Set when the server's side has ended (the session's `eof`).
    let server_ended = tokio::sync::Notify::new();
    let upstream = async {
        loop {
            let chunk = tokio::select! {
                chunk = stdin.recv() => match chunk {
                    Some(chunk) => chunk?,
                    None => Vec::new(),
                },
                // SSH has no half-close at the transport (RFC 4253 §11.1: a
                // side that is done disconnects), so once sshd's side has
                // ended nothing more we send can be read: end ours too, and
                // the relay closes the session, even while stdin stays open.
                () = server_ended.notified() => Vec::new(),
            };
            if chunk.is_empty() {
                let eof = Message::Text(Control::Eof.to_text().into());
                ws_tx.send(eof).await.map_err(lost)?;
                return Ok::<_, ClientError>(());
            }
            ws_tx
                .send(Message::Binary(Bytes::from(chunk)))
                .await
                .map_err(lost)?;
        }
    };
    let downstream = async {
        let mut out_tx = Some(out_tx);
        while let Some(msg) = ws_rx.next().await {
            match msg.map_err(lost)? {
                Message::Binary(b) => {
                    let tx = out_tx
                        .as_ref()
                        .ok_or_else(|| lost("data after the end of output"))?;
                    tx.send(Some(b)).await.map_err(|_| lost("stdout closed"))?;
                }
                Message::Text(t) => match Control::parse(t.as_str()).map_err(lost)? {
                    Control::Eof => {
                        if let Some(tx) = out_tx.take() {
                            tx.send(None).await.map_err(|_| lost("stdout closed"))?;
                        }
                        server_ended.notify_one();
                    }
                    Control::Error { reason } => return Err(ClientError::Relay(reason)),
                    // OpenSSH checks the host key against its own known_hosts;
                    // this client reports no session events, so has none acknowledged.
                    Control::Opened { .. } | Control::Ack { .. } | Control::Event { .. } => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        if out_tx.is_some() {
            return Err(lost("the relay closed the session"));
        }
        Ok(())
    };

    tokio::pin!(upstream, downstream);
    let result = tokio::select! {
        // The relay closed the session: stdin has nowhere to go.
        done = &mut downstream => done,
        sent = &mut upstream => match sent {
            Ok(()) => downstream.await,
            Err(e) => Err(e),
        },
    };
    if result.is_ok() {
        let _ = writer.join();
    }
    result
}

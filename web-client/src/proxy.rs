//! `sallyport proxy`: standard input and output bridged to a session, for
//! OpenSSH's ProxyCommand. Both directions run to completion: the end of
//! stdin is sent as `eof` (the session's write side closes, reads go on),
//! and the session's `eof` closes stdout.

use std::io::Write as _;
use std::os::fd::FromRawFd as _;

use futures::{SinkExt as _, StreamExt as _};
use sallyport_proto::client::Control;
use tokio::io::AsyncReadExt as _;
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

/// Runs the session until both directions are done or it fails.
pub async fn run(ws: Session) -> Result<(), ClientError> {
    let (mut ws_tx, mut ws_rx) = ws.split();

    // stdout is written by one thread that owns fd 1, so dropping the sender
    // closes it and the reader (ssh) sees end-of-stream exactly when the
    // session's output ends, while stdin may stay open.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Bytes>(STDOUT_QUEUE);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: fd 1 is open for the life of the process, and nothing else
        // in this program writes to it once the proxy runs: this File is its
        // only owner from here on, and closes it when the output ends.
        let mut stdout = unsafe { std::fs::File::from_raw_fd(1) };
        while let Some(chunk) = out_rx.blocking_recv() {
            stdout.write_all(&chunk)?;
        }
        Ok(())
    });

    let upstream = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                let eof = Message::Text(Control::Eof.to_text().into());
                ws_tx.send(eof).await.map_err(lost)?;
                return Ok::<_, ClientError>(());
            }
            ws_tx
                .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
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
                    tx.send(b).await.map_err(|_| lost("stdout closed"))?;
                }
                Message::Text(t) => match Control::parse(t.as_str()).map_err(lost)? {
                    Control::Eof => out_tx = None,
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

    let result = tokio::try_join!(upstream, downstream).map(|_| ());
    if result.is_ok() {
        let _ = writer.join();
    }
    result
}

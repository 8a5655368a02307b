//! tracing set-up shared by the Sallyport binaries.
//!
//! Human-readable logs escape what could forge a line or drive a terminal:
//! user names, reasons, addresses and everything else from the network go
//! into log fields, and one field formatter ([`EscapedFields`]) escapes
//! newlines, ESC and every other control character in every field and
//! message, so no call site has to remember to. JSON logs escape them by
//! being JSON.

use std::fmt;
use std::io::IsTerminal as _;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

/// Human-readable logs on stderr by default, JSON lines with `json`;
/// `RUST_LOG` filters (default `info`). Colours only on a terminal (and
/// not with `NO_COLOR`), so a log file holds no escape codes at all.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        builder
            .fmt_fields(EscapedFields::default())
            .with_ansi(colour)
            .init();
    }
}

/// The default field formatter, with control characters escaped in what
/// it writes (see [`escape_control`]).
#[derive(Debug, Default)]
pub struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut text = String::new();
        self.0.format_fields(Writer::new(&mut text), fields)?;
        escape_control(&text, &mut writer)
    }
}

/// Writes `text` with every character that could start a new log line,
/// move the cursor or change colours, or reorder what a reader sees
/// written as a Rust escape: `\n`, `\r`, `\t`, `\u{1b}` (ESC), the other
/// C0 and C1 controls and DEL, the Unicode line and paragraph separators
/// and the bidirectional controls.
pub fn escape_control(text: &str, out: &mut impl fmt::Write) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c) =>
            {
                write!(out, "\\u{{{:x}}}", c as u32)?
            }
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminate_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let mut out = String::new();
        escape_control(
            "alice\n2026-01-01T00:00:00Z  INFO forged\r\x1b[31m\u{9b}\u{202e}é\\",
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            "alice\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[31m\\u{9b}\\u{202e}é\\"
        );
    }

    #[test]
    fn every_field_and_the_message_of_an_event_are_escaped() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields::default())
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let evil = "bob\n2026-01-01T00:00:00Z  INFO forged line\x1b[31m";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("session", user = %evil);
            let _in = span.enter();
            tracing::warn!(user = %evil, reason = ?evil, peer = evil, "sign-in failed for {evil}");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("bob\\n2026-01-01T00:00:00Z  INFO forged line\\u{1b}[31m"));
    }
}

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
use std::sync::OnceLock;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

/// A log level as `--log-level` takes it: `off`, `error`, `warn`, `info`,
/// `debug` or `trace` (any case).
pub use tracing_subscriber::filter::LevelFilter;

/// The level when neither `RUST_LOG` nor `--log-level` says otherwise.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::INFO;

/// Replaces the filter of the subscriber [`init`] installed.
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Set once by [`init`]: how to change the filter later, unless `RUST_LOG`
/// is in force (then `None`: nothing else may change it).
static RELOAD: OnceLock<Option<Reload>> = OnceLock::new();

/// Human-readable logs on stderr by default, JSON lines with `json`, at
/// [`DEFAULT_LEVEL`] unless `RUST_LOG` says otherwise; see [`init_with_level`].
pub fn init(json: bool) {
    init_with_level(json, None);
}

/// Installs the process's logger. Colours only on a terminal (and not
/// with `NO_COLOR`), so a log file holds no escape codes at all.
///
/// Which filter applies, first match wins:
/// 1. `RUST_LOG`, when set to a valid filter: a full `tracing` filter
///    (`info,sallyport_relay=debug,quinn=warn`), for whoever debugs with
///    the environment of one run. `--log-level` is then ignored.
/// 2. `level` (`--log-level`, or `SALLYPORT_LOG_LEVEL`), or one set later by
///    [`set_level`] (the relay's config file `log_level`): every target at
///    that level.
/// 3. [`DEFAULT_LEVEL`].
pub fn init_with_level(json: bool, level: Option<LevelFilter>) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| EnvFilter::try_new(v).map_err(|e| e.to_string()));
    let (filter, env_in_force, env_error) = match from_env {
        Some(Ok(f)) => (f, true, None),
        Some(Err(e)) => (level_filter(level.unwrap_or(DEFAULT_LEVEL)), false, Some(e)),
        None => (level_filter(level.unwrap_or(DEFAULT_LEVEL)), false, None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let reload: Reload = if json {
        let builder = builder.json().with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = builder.try_init();
        Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
    } else {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let builder = builder
            .fmt_fields(EscapedFields::default())
            .with_ansi(colour)
            .with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = builder.try_init();
        Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
    };
    let _ = RELOAD.set((!env_in_force).then_some(reload));
    if let Some(e) = env_error {
        tracing::warn!(error = %e, "RUST_LOG is not a valid filter; ignoring it");
    }
    if env_in_force && level.is_some() {
        tracing::info!("RUST_LOG is set: it decides what is logged, not --log-level");
    }
}

/// Sets every target to `level` from now on, unless `RUST_LOG` is in force
/// (see [`init_with_level`]); a no-op before [`init`].
pub fn set_level(level: LevelFilter) {
    match RELOAD.get() {
        Some(Some(reload)) => {
            if let Err(e) = reload(level_filter(level)) {
                tracing::warn!(error = %e, "cannot change the log level");
            }
        }
        Some(None) => {
            tracing::info!("RUST_LOG is set: it decides what is logged, not log_level");
        }
        None => {}
    }
}

/// Parses a `--log-level` value (see [`LevelFilter`]), with an error that
/// lists the levels.
pub fn parse_level(text: &str) -> Result<LevelFilter, String> {
    text.trim().parse().map_err(|_| {
        format!("log level {text:?} is not one of off, error, warn, info, debug, trace")
    })
}

/// A filter that lets every target log at `level` and above.
fn level_filter(level: LevelFilter) -> EnvFilter {
    EnvFilter::new(level.to_string())
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

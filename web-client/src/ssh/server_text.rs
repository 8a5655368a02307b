//! Text the server shows the person before the shell: the banner (RFC 4252
//! §5.4) and keyboard-interactive names, instructions and prompts (RFC 4256
//! §3.2). It reaches the terminal as OpenSSH's `fmprintf` would show it:
//! nothing in it can move the cursor, change colours or talk to the
//! terminal, and no encoding makes it fail.

/// Most banner bytes shown in one session (all banners together, RFC 4252
/// §5.4, before sanitising). OpenSSH's sshd refuses a `Banner` file over
/// 1 MiB and no SSH packet is over 256 KiB (OpenSSH's `PACKET_MAX_SIZE`),
/// so one whole banner from any sshd fits; a server sending banner after
/// banner is cut off here, with a line saying so.
pub const MAX_BANNER_BYTES: usize = 256 * 1024;

/// `raw` made safe to write to a terminal, the way OpenSSH's client shows
/// server text (its `fmprintf`, `utf8.c`):
///
/// - invalid UTF-8 is replaced by U+FFFD (OpenSSH escapes the bytes
///   instead; a replacement character reads better and is as harmless);
/// - a bare line feed becomes CR LF (a terminal page does no `onlcr`, so a
///   bare LF would render as a staircase); CR LF stays; tab stays;
/// - every other C0 control, DEL and every C1 control (U+0080 to U+009F) is
///   shown as OpenSSH's `vis` shows it, a backslash and three octal digits
///   per byte: ESC is `\033`, a bare CR `\015`, U+009B `\302\233`. So no
///   escape sequence, bell or cursor movement reaches the terminal.
pub fn for_terminal(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => out.push_str("\r\n"),
            '\r' if chars.peek() == Some(&'\n') => {
                chars.next();
                out.push_str("\r\n");
            }
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Longest one-line server text kept ([`one_line`]), in characters.
pub const MAX_LINE_CHARS: usize = 512;

/// `raw` (a disconnect message, RFC 4253 §11.1) as one harmless line for
/// an end message: made safe like [`for_terminal`], line breaks and tabs
/// turned into spaces, trimmed, and cut at [`MAX_LINE_CHARS`] with `…`.
pub fn one_line(raw: &str) -> String {
    let safe = for_terminal(raw.as_bytes())
        .replace("\r\n", " ")
        .replace('\t', " ");
    let safe = safe.trim();
    match safe.char_indices().nth(MAX_LINE_CHARS) {
        Some((cut, _)) => format!("{}…", &safe[..cut]),
        None => safe.to_owned(),
    }
}

/// Banners received while logging in and not yet shown, bounded by
/// [`MAX_BANNER_BYTES`] for the whole session.
#[derive(Debug, Default)]
pub struct Banners {
    pending: String,
    /// Raw banner bytes taken so far, shown or not.
    received: usize,
    /// The cut-off line has been queued.
    cut: bool,
}

impl Banners {
    /// Queues one `SSH_MSG_USERAUTH_BANNER` text for showing.
    pub fn push(&mut self, banner: &str) {
        let room = MAX_BANNER_BYTES.saturating_sub(self.received);
        let raw = banner.as_bytes();
        self.received = self.received.saturating_add(raw.len());
        if raw.len() <= room {
            self.pending.push_str(&for_terminal(raw));
        } else {
            // Cut at a character boundary within the room.
            let mut end = room;
            while !banner.is_char_boundary(end) {
                end -= 1;
            }
            self.pending.push_str(&for_terminal(&raw[..end]));
            if !self.cut {
                self.cut = true;
                self.pending.push_str(&format!(
                    "\r\n[the server's banner is cut here: it sent more than {} KiB]\r\n",
                    MAX_BANNER_BYTES / 1024
                ));
            }
        }
    }

    /// What is waiting to be shown, emptying the queue.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disconnect_message_becomes_one_harmless_bounded_line() {
        assert_eq!(
            one_line("Too many authentication failures\r\n"),
            "Too many authentication failures"
        );
        assert_eq!(one_line("a\nb\tc\x1b[2J"), "a b c\\033[2J");
        let long = one_line(&"x".repeat(MAX_LINE_CHARS + 10));
        assert_eq!(long.chars().count(), MAX_LINE_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn printable_text_and_tabs_pass_unchanged() {
        assert_eq!(for_terminal(b"Welcome\tto web1"), "Welcome\tto web1");
        assert_eq!(
            for_terminal("Grüße, 日本, 😀".as_bytes()),
            "Grüße, 日本, 😀"
        );
        assert_eq!(for_terminal(b""), "");
        // A backslash is printable: OpenSSH passes it through as well.
        assert_eq!(for_terminal(b"C:\\dir"), "C:\\dir");
    }

    #[test]
    fn bare_line_feeds_become_line_breaks_and_crlf_stays() {
        assert_eq!(for_terminal(b"one\ntwo\n"), "one\r\ntwo\r\n");
        assert_eq!(for_terminal(b"one\r\ntwo\r\n"), "one\r\ntwo\r\n");
        assert_eq!(for_terminal(b"\n\n"), "\r\n\r\n");
        assert_eq!(for_terminal(b"a\r\n\nb"), "a\r\n\r\nb");
    }

    #[test]
    fn a_bare_carriage_return_cannot_overwrite_the_line() {
        assert_eq!(for_terminal(b"safe\rEVIL"), "safe\\015EVIL");
        assert_eq!(for_terminal(b"end\r"), "end\\015");
        assert_eq!(for_terminal(b"\r\r\n"), "\\015\r\n");
    }

    #[test]
    fn escape_sequences_and_other_c0_controls_are_shown_not_obeyed() {
        assert_eq!(
            for_terminal(b"\x1b[2J\x1b]0;owned\x07x"),
            "\\033[2J\\033]0;owned\\007x"
        );
        assert_eq!(
            for_terminal(b"\x00\x08\x0b\x0c\x7f"),
            "\\000\\010\\013\\014\\177"
        );
        for b in (0u8..0x20).filter(|b| !matches!(b, b'\n' | b'\r' | b'\t')) {
            let shown = for_terminal(&[b]);
            assert_eq!(shown, format!("\\{b:03o}"));
            assert!(!shown.bytes().any(|c| c.is_ascii_control()), "{b:#x}");
        }
    }

    #[test]
    fn c1_controls_are_shown_as_their_bytes() {
        // U+009B is CSI for terminals that take 8-bit controls.
        assert_eq!(for_terminal("\u{9b}31m".as_bytes()), "\\302\\23331m");
        assert_eq!(for_terminal("\u{85}".as_bytes()), "\\302\\205");
    }

    #[test]
    fn invalid_utf8_is_replaced_never_fatal() {
        // Latin-1 "Grüße".
        assert_eq!(for_terminal(b"Gr\xfc\xdfe\n"), "Gr\u{fffd}\u{fffd}e\r\n");
        // A lone continuation byte, a truncated sequence, an overlong form.
        assert_eq!(for_terminal(b"\x80"), "\u{fffd}");
        assert_eq!(for_terminal(b"a\xe2\x82"), "a\u{fffd}");
        assert_eq!(for_terminal(b"\xc0\xaf"), "\u{fffd}\u{fffd}");
        // A Latin-1 byte that would be a C1 control in UTF-8 terms.
        assert_eq!(for_terminal(b"\x9b2J"), "\u{fffd}2J");
    }

    #[test]
    fn banners_are_shown_whole_up_to_the_bound_then_cut_once() {
        let mut b = Banners::default();
        let big = "x".repeat(48 * 1024 - 1) + "\n";
        b.push(&big);
        let shown = b.take();
        assert_eq!(shown.len(), 48 * 1024 + 1);
        assert!(shown.ends_with("x\r\n"));
        assert_eq!(b.take(), "");

        let mut b = Banners::default();
        b.push(&"é".repeat(MAX_BANNER_BYTES / 2 - 1));
        b.push("aé!");
        b.push("LATER");
        let shown = b.take();
        assert!(shown.starts_with("éé"));
        assert_eq!(shown.matches("cut here").count(), 1);
        assert!(!shown.contains("LATER"));
        assert!(shown.contains("éa\r\n[the server's banner is cut here"));
    }
}

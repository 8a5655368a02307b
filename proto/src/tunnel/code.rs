//! Every QUIC application error code of the tunnel, in one table.
//!
//! A code travels in a CONNECTION_CLOSE frame (RFC 9000 §19.19, the
//! application variant), a RESET_STREAM (§19.4) or a STOP_SENDING (§19.5),
//! and the two ends must agree on what each number means, so the numbers
//! live here and nowhere else, each with the words a person reads. The
//! values are fixed: relays and connectors already deployed send and check
//! them. A new meaning takes a new number; a number this side does not know
//! (from a newer peer) is `None` from [`Code::from_code`].

macro_rules! codes {
    {$(
        $(#[doc = $doc:literal])*
        $name:ident = $value:literal, $desc:literal;
    )*} => {
        /// A QUIC application error code of the tunnel: why a connection
        /// or stream was closed. See the module docs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[doc = $doc])* $name,)*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$name),*];

            /// The number on the wire.
            pub const fn code(self) -> u32 {
                match self {
                    $(Code::$name => $value,)*
                }
            }

            /// The code with this number, `None` for one this side does
            /// not know (QUIC error codes are varints, up to 2^62 - 1).
            pub const fn from_code(code: u64) -> Option<Code> {
                match code {
                    $($value => Some(Code::$name),)*
                    _ => None,
                }
            }

            /// A person's words for the code, for logs and for the message
            /// that ends a session.
            pub const fn describe(self) -> &'static str {
                match self {
                    $(Code::$name => $desc,)*
                }
            }
        }
    };
}

codes! {
    /// Connection or stream: a normal end (shutdown, drain finished,
    /// enrolment done, a refused stream's other direction).
    Done = 0, "closed normally";
    /// Connection: the peer broke the protocol (bad frame, unexpected message).
    Protocol = 1, "the peer broke the tunnel protocol";
    /// Connection: the connector's certificate is unknown here, or its
    /// token was refused. The connector stops for good.
    Unauthorized = 2, "the connector is not enrolled with this relay";
    /// Connection: the connector was revoked (or replaced by a new
    /// enrolment). The connector stops for good.
    Revoked = 3, "the connector was revoked";
    /// Connection: the peer took too long to send what it had to (hello,
    /// enrolment request).
    Timeout = 4, "the peer took too long to send what it had to";
    /// Connection: the connector already holds as many connections as the
    /// relay allows it (`--max-connections-per-connector`).
    TooMany = 5, "the connector already holds as many connections as the relay allows";
    /// Connection: the relay is serving as many enrolments as it allows (in
    /// all, or from this address); try again shortly.
    Busy = 6, "the relay is busy (at its limit); try again shortly";
    /// Stream, relay → connector: the client went away.
    ClientGone = 0x10, "the client went away";
    /// Stream, connector → relay: the connection to the service failed: it
    /// reset the connection or took no more bytes.
    ServiceFailed = 0x11, "the connection to the service failed (it reset or closed the connection)";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_unique_and_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for &code in Code::ALL {
            assert!(seen.insert(code.code()), "{code:?} reuses {}", code.code());
            assert_eq!(Code::from_code(code.code().into()), Some(code));
            assert!(!code.describe().is_empty(), "{code:?} has no description");
            assert_eq!(code.to_string(), code.describe());
        }
        let descriptions: std::collections::HashSet<_> =
            Code::ALL.iter().map(|c| c.describe()).collect();
        assert_eq!(
            descriptions.len(),
            Code::ALL.len(),
            "two codes read the same"
        );
    }

    #[test]
    fn numbers_of_deployed_peers_are_unchanged() {
        let fixed = [
            (Code::Done, 0),
            (Code::Protocol, 1),
            (Code::Unauthorized, 2),
            (Code::Revoked, 3),
            (Code::Timeout, 4),
            (Code::TooMany, 5),
            (Code::ClientGone, 0x10),
            (Code::ServiceFailed, 0x11),
        ];
        for (code, value) in fixed {
            assert_eq!(code.code(), value, "{code:?}");
        }
    }

    #[test]
    fn unknown_numbers_are_none() {
        for n in [7, 0x0f, 0x12, u32::MAX.into(), (1 << 62) - 1] {
            assert_eq!(Code::from_code(n), None, "{n}");
        }
    }
}

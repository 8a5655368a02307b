//! Property tests: every message survives encode → decode unchanged, decoding
//! never panics on arbitrary bytes, and a frame split anywhere is reported as
//! incomplete rather than misparsed.

use proptest::prelude::*;
use sallyport_proto::limits::*;
use sallyport_proto::token::EnrolmentToken;
use sallyport_proto::tunnel::*;
use sallyport_proto::{client, decode_frame, encode_frame, FrameError};

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,40}"
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{0,{max}}}"))
        .unwrap()
        .prop_filter("within byte limit", move |s| s.len() <= max)
}

fn service() -> impl Strategy<Value = ServiceInfo> {
    (
        name(),
        prop_oneof![Just(ServiceKind::Ssh), Just(ServiceKind::Tcp)],
        proptest::collection::vec(text(200), 0..MAX_HOST_KEYS),
    )
        .prop_map(|(name, kind, host_keys)| ServiceInfo {
            name,
            kind,
            host_keys,
        })
}

fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        (
            name(),
            text(MAX_ID_LEN),
            proptest::collection::vec(service(), 0..8)
        )
            .prop_map(|(connector, version, services)| Control::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                connector,
                version,
                services,
            })),
        (
            text(MAX_ID_LEN),
            any::<u32>(),
            proptest::collection::vec((name(), text(MAX_REASON_LEN)), 0..4)
        )
            .prop_map(|(relay_version, heartbeat_secs, refused)| {
                Control::Welcome(Welcome {
                    protocol: PROTOCOL_VERSION,
                    relay_version,
                    heartbeat_secs,
                    refused: refused
                        .into_iter()
                        .map(|(service, reason)| RefusedService { service, reason })
                        .collect(),
                })
            }),
        any::<u64>().prop_map(|seq| Control::Heartbeat { seq }),
        any::<u64>().prop_map(|seq| Control::HeartbeatAck { seq }),
        text(MAX_REASON_LEN).prop_map(|reason| Control::Drain { reason }),
    ]
}

fn roundtrip<T>(msg: &T)
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + sallyport_proto::Validate
        + PartialEq
        + std::fmt::Debug,
{
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf).unwrap();
    let (back, used) = decode_frame::<T>(&buf).unwrap().unwrap();
    assert_eq!(&back, msg);
    assert_eq!(used, buf.len());
    // Every strict prefix is incomplete, never an error or a different message.
    for cut in 0..buf.len() {
        assert_eq!(decode_frame::<T>(&buf[..cut]), Ok(None), "cut at {cut}");
    }
}

proptest! {
    #[test]
    fn control_roundtrips(msg in control()) {
        roundtrip(&msg);
    }

    #[test]
    fn stream_header_roundtrips(stream in text(MAX_ID_LEN), service in name(), user in name(), client_addr in text(MAX_ADDR_LEN)) {
        roundtrip(&StreamHeader { stream, service, user, client_addr });
    }

    #[test]
    fn stream_reply_roundtrips(reason in proptest::option::of(text(MAX_REASON_LEN))) {
        roundtrip(&match reason {
            None => StreamReply::Accept,
            Some(reason) => StreamReply::Refuse { reason },
        });
    }

    #[test]
    fn enrolment_roundtrips(secret in text(MAX_ID_LEN), csr_pem in text(2000), version in text(MAX_ID_LEN), connector in name()) {
        roundtrip(&EnrolRequest { secret, csr_pem: csr_pem.clone(), version });
        roundtrip(&EnrolReply::Enrolled { connector, cert_pem: csr_pem.clone(), ca_pem: csr_pem });
    }

    #[test]
    fn token_roundtrips(relay in text(MAX_ADDR_LEN), ca in "[0-9a-f]{64}", secret in "[A-Za-z0-9_-]{1,64}", expires in any::<u64>()) {
        let t = EnrolmentToken { relay, ca_sha256: ca, secret, expires };
        prop_assert_eq!(EnrolmentToken::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame::<Control>(&bytes);
        let _ = decode_frame::<StreamHeader>(&bytes);
        let _ = decode_frame::<StreamReply>(&bytes);
        let _ = decode_frame::<EnrolRequest>(&bytes);
        let _ = decode_frame::<EnrolReply>(&bytes);
        let s = String::from_utf8_lossy(&bytes);
        let _ = EnrolmentToken::decode(&s);
        let _ = client::Control::parse(&s);
    }
}

#[test]
fn oversize_length_is_refused_before_reading_the_body() {
    let buf = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
    assert_eq!(
        decode_frame::<Control>(&buf),
        Err(FrameError::Oversize {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", "-x", "a b", "ü", &"x".repeat(MAX_NAME_LEN + 1)] {
        let h = StreamHeader {
            stream: "s".into(),
            service: bad.into(),
            user: "u".into(),
            client_addr: "a".into(),
        };
        let mut buf = Vec::new();
        assert!(
            matches!(encode_frame(&h, &mut buf), Err(FrameError::Invalid(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn too_many_services_are_refused() {
    let svc = ServiceInfo {
        name: "s".into(),
        kind: ServiceKind::Ssh,
        host_keys: vec![],
    };
    let hello = Control::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        connector: "c".into(),
        version: "1".into(),
        services: vec![svc; MAX_SERVICES + 1],
    });
    let body = serde_json::to_vec(&hello).unwrap();
    let mut buf = (body.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(&body);
    assert!(matches!(
        decode_frame::<Control>(&buf),
        Err(FrameError::Invalid(_))
    ));
}

#[test]
fn client_control_parses() {
    assert_eq!(
        client::Control::parse(r#"{"type":"eof"}"#),
        Ok(client::Control::Eof)
    );
    assert!(client::Control::parse("nonsense").is_err());
    let opened = client::Control::Opened {
        connector: "c1".into(),
        host_keys: vec!["ssh-ed25519 AAAA".into()],
        record_input: false,
    };
    assert_eq!(client::Control::parse(&opened.to_text()), Ok(opened));
    // A relay that sends too many keys is refused, not believed.
    let flood = client::Control::Opened {
        connector: "c1".into(),
        host_keys: vec!["ssh-ed25519 AAAA".into(); MAX_HOST_KEYS + 1],
        record_input: false,
    };
    assert!(client::Control::parse(&flood.to_text()).is_err());
}

/// Connectors already deployed read the stream id as `session`: the
/// header keeps that name on the wire, and reads `stream` as well.
#[test]
fn stream_header_keeps_its_wire_name() {
    let h = StreamHeader {
        stream: "s1".into(),
        service: "web1".into(),
        user: "u".into(),
        client_addr: "127.0.0.1:1".into(),
    };
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["session"], "s1", "{json}");
    assert!(json.get("stream").is_none(), "{json}");
    let old: StreamHeader = serde_json::from_str(
        r#"{"session":"s1","service":"web1","user":"u","client_addr":"127.0.0.1:1"}"#,
    )
    .unwrap();
    assert_eq!(old, h);
    let new: StreamHeader = serde_json::from_str(
        r#"{"stream":"s1","service":"web1","user":"u","client_addr":"127.0.0.1:1"}"#,
    )
    .unwrap();
    assert_eq!(new, h);
}

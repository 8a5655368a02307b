//! Checks shared by the fuzz targets of `sallyport-proto`.
//!
//! Every decoder must return an error instead of panicking, and whatever it
//! accepts must survive a round trip: encode it again, decode that, and get an
//! equal value.

use std::fmt::Debug;

use sallyport_proto::limits::FRAME_HEADER_LEN;
use sallyport_proto::{decode_frame, encode_frame, Validate};
use serde::{de::DeserializeOwned, Serialize};

/// Re-encodes `msg` as a frame and checks that it decodes to an equal value,
/// using exactly the bytes written, and that any shorter prefix is "incomplete".
pub fn check_frame_roundtrip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + Validate + PartialEq + Debug,
{
    let mut out = Vec::new();
    encode_frame(msg, &mut out).expect("a decoded message must encode again");
    let (again, used) = decode_frame::<T>(&out)
        .expect("a re-encoded message must decode")
        .expect("a re-encoded message is a whole frame");
    assert_eq!(
        used,
        out.len(),
        "decoder used a different length than the encoder wrote"
    );
    assert_eq!(&again, msg, "round trip changed the message");
    // A frame cut short (in its body or its header) is "read more", never an error or a message.
    assert!(matches!(decode_frame::<T>(&out[..out.len() - 1]), Ok(None)));
    assert!(matches!(
        decode_frame::<T>(&out[..FRAME_HEADER_LEN - 1]),
        Ok(None)
    ));
}

/// Fuzzes `decode_frame::<T>` on raw bytes and round-trips whatever it accepts.
pub fn fuzz_frame<T>(data: &[u8])
where
    T: Serialize + DeserializeOwned + Validate + PartialEq + Debug,
{
    if let Ok(Some((msg, used))) = decode_frame::<T>(data) {
        assert!(
            (FRAME_HEADER_LEN..=data.len()).contains(&used),
            "decoder claims {used} bytes of a {}-byte buffer",
            data.len()
        );
        // What was accepted must already satisfy the limits.
        msg.validate().expect("decoder returned an invalid message");
        check_frame_roundtrip(&msg);
    }
}

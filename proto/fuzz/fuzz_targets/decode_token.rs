//! `EnrolmentToken::decode` on arbitrary text; accepted tokens must round-trip
//! through their own text form and through a frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sallyport_proto::token::EnrolmentToken;
use sallyport_proto::Validate;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(token) = EnrolmentToken::decode(&text) {
        token.validate().expect("decoder returned an invalid token");
        let encoded = token.encode();
        let again = EnrolmentToken::decode(&encoded).expect("a re-encoded token must decode");
        assert_eq!(again, token, "text round trip changed the token");
        sallyport_proto_fuzz::check_frame_roundtrip(&token);
    }
});

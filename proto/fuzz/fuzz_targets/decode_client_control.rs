//! `client::Control::parse` on arbitrary text; accepted messages must
//! round-trip through their own text form and through a frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sallyport_proto::client::Control;
use sallyport_proto::Validate;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(msg) = Control::parse(&text) {
        msg.validate().expect("parser returned an invalid message");
        let again = Control::parse(&msg.to_text()).expect("a re-encoded message must parse");
        assert_eq!(again, msg, "text round trip changed the message");
        sallyport_proto_fuzz::check_frame_roundtrip(&msg);
    }
});

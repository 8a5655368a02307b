//! `decode_frame::<tunnel::StreamHeader>` on arbitrary bytes; accepted frames must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sallyport_proto::tunnel::StreamHeader;

fuzz_target!(|data: &[u8]| {
    sallyport_proto_fuzz::fuzz_frame::<StreamHeader>(data);
});

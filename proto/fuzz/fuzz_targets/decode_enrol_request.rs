//! `decode_frame::<tunnel::EnrolRequest>` on arbitrary bytes; accepted frames must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sallyport_proto::tunnel::EnrolRequest;

fuzz_target!(|data: &[u8]| {
    sallyport_proto_fuzz::fuzz_frame::<EnrolRequest>(data);
});

//! Any bytes a peer sends as a request or a response frame: decoding never
//! panics, and what decodes encodes again.
#![no_main]

use lanspread_net::proto::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = postcard::from_bytes::<Request>(data) {
        let again = postcard::to_allocvec(&request).expect("a decoded request encodes");
        assert!(postcard::from_bytes::<Request>(&again).is_ok());
    }
    if let Ok(response) = postcard::from_bytes::<Response>(data) {
        let again = postcard::to_allocvec(&response).expect("a decoded response encodes");
        assert!(postcard::from_bytes::<Response>(&again).is_ok());
    }
});

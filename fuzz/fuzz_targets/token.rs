//! Fuzzes token verification and the JWT_CONFIG parser.
#![no_main]

use herald::auth::Verifier;
use herald::auth::keys::{development_auth, parse_jwt_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Verifier::new(development_auth().0, 120).verify(text, 1_700_000_000);
        let _ = parse_jwt_config(text);
    }
});

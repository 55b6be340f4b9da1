//! Fuzzes the decoder of the messages nodes exchange over Redis pub/sub.
#![no_main]

use bytes::Bytes;
use herald::backplane::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode(&Bytes::copy_from_slice(data)) {
        // Whatever decodes re-encodes to the same messages.
        assert_eq!(decode(&Bytes::from(encode(&batch))).unwrap(), batch);
    }
});

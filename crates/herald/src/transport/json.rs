//! The message as one JSON object, the bytes shared by the long-poll answer and the WebSocket
//! `msg` frame ([`super::WireFormat::Json`]).

use bytes::Bytes;

use crate::model::Message;

/// `{"topic":…,"id":…,"event":…,"payload":…}` for a message of topic `name` (as its client
/// names it). The id is a string: ids may exceed JavaScript's safe integers.
pub fn message(message: &Message, name: &str) -> Bytes {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        topic: &'a str,
        id: &'a str,
        event: &'a str,
        payload: &'a str,
    }
    let id = message.id.to_string();
    let json = Json {
        topic: name,
        id: &id,
        event: &String::from_utf8_lossy(&message.event),
        payload: &String::from_utf8_lossy(&message.payload),
    };
    Bytes::from(serde_json::to_vec(&json).expect("JSON of strings cannot fail"))
}

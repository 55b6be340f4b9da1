//! The JSON of Herald's WebSocket protocol: the commands a client sends and the frames Herald
//! answers with (docs/api.md, "WebSocket").

use serde::Deserialize;

use crate::transport::ws::frame::{self, opcode};

/// A client's command, one JSON object a text message.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum Command {
    /// Subscribe to more topics, resuming them from a cursor of exactly these topics.
    Subscribe {
        id: Option<u64>,
        topics: Vec<String>,
        cursor: Option<String>,
        /// Collection topics start with each event name's latest published event.
        #[serde(default)]
        latest: bool,
    },
    /// Unsubscribe from topics.
    Unsubscribe { id: Option<u64>, topics: Vec<String> },
    /// Publish one message.
    Publish {
        id: Option<u64>,
        topic: String,
        event: String,
        payload: String,
    },
    /// Authenticate (first time) or refresh the token.
    Auth { id: Option<u64>, token: String },
    /// An application-level ping: answered with a pong.
    Ping { id: Option<u64> },
}

/// Why a text message is not a command. `id` is the command's, when it could be read.
#[derive(Debug)]
pub(super) struct NotACommand {
    pub(super) id: Option<u64>,
    pub(super) code: &'static str,
    pub(super) message: String,
}

/// Reads one command.
pub(super) fn parse(text: &str) -> Result<Command, NotACommand> {
    serde_json::from_str(text).map_err(|e| {
        // Say which command failed when the id can be read at all.
        #[derive(Deserialize)]
        struct Id {
            id: Option<u64>,
            op: Option<String>,
        }
        let probe: Option<Id> = serde_json::from_str(text).ok();
        let known = ["subscribe", "unsubscribe", "publish", "auth", "ping"];
        let (code, message) = match &probe {
            None => ("invalid_command", format!("not a JSON command object: {e}")),
            Some(Id { op: None, .. }) => ("invalid_command", "a command needs an \"op\"".to_owned()),
            Some(Id { op: Some(op), .. }) if !known.contains(&op.as_str()) => (
                "unknown_op",
                format!("unknown op {op:?}: one of subscribe, unsubscribe, publish, auth, ping"),
            ),
            Some(_) => ("invalid_command", format!("{e}")),
        };
        NotACommand {
            id: probe.and_then(|p| p.id),
            code,
            message,
        }
    })
}

/// Appends a text frame holding `json`.
pub(super) fn push_text(out: &mut Vec<u8>, json: &[u8]) {
    frame::put_header(out, opcode::TEXT, json.len());
    out.extend_from_slice(json);
}

/// `{"op":"<op>","id":<id>` and then the fields of `rest` (a JSON object), `}`: `op` and `id` come
/// first, as docs/api.md writes every frame (a `json!` object would sort its keys).
fn frame_json(op: &str, id: Option<u64>, rest: serde_json::Value) -> String {
    let id = id.map_or_else(|| "null".to_owned(), |id| id.to_string());
    let mut json = format!("{{\"op\":\"{op}\",\"id\":{id}");
    if let serde_json::Value::Object(fields) = rest
        && !fields.is_empty()
    {
        let fields = serde_json::Value::Object(fields).to_string();
        json.push(',');
        json.push_str(&fields[1..fields.len() - 1]);
    }
    json.push('}');
    json
}

/// Appends `{"op":"error","id":…,"code":…,"message":…}`.
pub(super) fn push_error(out: &mut Vec<u8>, id: Option<u64>, code: &str, message: &str) {
    let json = frame_json("error", id, serde_json::json!({"code": code, "message": message}));
    push_text(out, json.as_bytes());
}

/// Appends an `ack` of command `id` with the extra fields of `fields` (a JSON object).
pub(super) fn push_ack(out: &mut Vec<u8>, id: Option<u64>, fields: serde_json::Value) {
    push_text(out, frame_json("ack", id, fields).as_bytes());
}

/// Appends `{"op":"pong","id":…}`.
pub(super) fn push_pong(out: &mut Vec<u8>, id: Option<u64>) {
    push_text(out, frame_json("pong", id, serde_json::json!({})).as_bytes());
}

/// Appends `{"op":"gap","topics":[…]}`.
pub(super) fn push_gap(out: &mut Vec<u8>, topics: &[&str]) {
    let json = serde_json::json!({"op": "gap", "topics": topics});
    push_text(out, json.to_string().as_bytes());
}

/// Appends a `msg` frame: `{"op":"msg",` + the message's shared JSON fields + the cursor.
/// `shared` is [`crate::transport::json::message`]'s object; only the cursor is per connection.
pub(super) fn push_msg(out: &mut Vec<u8>, shared: &[u8], cursor: &[u8]) {
    const HEAD: &[u8] = b"{\"op\":\"msg\",";
    const CURSOR: &[u8] = b",\"cursor\":\"";
    let inner = &shared[1..shared.len() - 1];
    let len = HEAD.len() + inner.len() + CURSOR.len() + cursor.len() + 2;
    // One allocation for the frame rather than one per piece as the buffer grows (at most 10
    // header bytes).
    out.reserve(10 + len);
    frame::put_header(out, opcode::TEXT, len);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(inner);
    out.extend_from_slice(CURSOR);
    out.extend_from_slice(cursor);
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        assert!(matches!(
            parse(r#"{"op":"subscribe","id":1,"topics":["a"]}"#),
            Ok(Command::Subscribe {
                id: Some(1),
                cursor: None,
                ..
            })
        ));
        assert!(matches!(parse(r#"{"op":"ping"}"#), Ok(Command::Ping { id: None })));
        let e = parse(r#"{"op":"dance","id":4}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(4), "unknown_op"));
        let e = parse(r#"{"op":"publish","id":5,"topic":"a"}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(5), "invalid_command"));
        let e = parse("not json").unwrap_err();
        assert_eq!((e.id, e.code), (None, "invalid_command"));
        let e = parse(r#"{"id":2}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(2), "invalid_command"));
    }

    #[test]
    fn answers_put_op_and_id_first() {
        let text = |out: &[u8]| String::from_utf8(out[2..].to_vec()).unwrap();
        let mut out = Vec::new();
        push_ack(&mut out, Some(3), serde_json::json!({"topics": ["a"], "cursor": "c"}));
        assert_eq!(text(&out), r#"{"op":"ack","id":3,"cursor":"c","topics":["a"]}"#);
        let mut out = Vec::new();
        push_error(&mut out, None, "unknown_op", "say \"why\"");
        assert_eq!(
            text(&out),
            r#"{"op":"error","id":null,"code":"unknown_op","message":"say \"why\""}"#
        );
        let mut out = Vec::new();
        push_pong(&mut out, Some(1));
        assert_eq!(text(&out), r#"{"op":"pong","id":1}"#);
    }

    #[test]
    fn a_msg_frame_is_the_shared_json_with_the_cursor() {
        let mut out = Vec::new();
        push_msg(
            &mut out,
            br#"{"topic":"a","id":"7","event":"e","payload":"p"}"#,
            b"m1.x",
        );
        let text = std::str::from_utf8(&out[2..]).unwrap();
        assert_eq!(usize::from(out[1]), text.len());
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op":"msg","topic":"a","id":"7","event":"e","payload":"p","cursor":"m1.x"})
        );
    }
}

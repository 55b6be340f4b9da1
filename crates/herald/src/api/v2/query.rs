//! The query string of a v2 request, parsed into what the route needs, or a precise refusal.
//!
//! Pure and fuzzed. Percent-decoding is `form_urlencoded`'s (`+` is a space). Parameters Herald
//! does not know are ignored, so cache-busters (`_=1700000000`) pass; a known parameter given twice
//! where it makes sense once is refused rather than guessed at.

/// Longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

/// What a v2 subscribe or poll query says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    /// Every `topic`, in the order given (not yet validated against grants).
    pub topics: Vec<String>,
    /// `access_token`: a token for browsers that cannot send a header.
    pub access_token: Option<String>,
    /// `last_event_id`: the cursor, for clients that cannot send `Last-Event-ID`.
    pub last_event_id: Option<String>,
    /// `cursor`: the cursor, as a long-poll passes it.
    pub cursor: Option<String>,
    /// `timeout`: how long a long-poll may be held, seconds (unparsed).
    pub timeout: Option<String>,
    /// `ticket`: a single-use ticket from `POST /v2/tickets`.
    pub ticket: Option<String>,
    /// `latest=1`: collection topics start with each event name's latest published event.
    pub latest: bool,
}

/// Why a query was refused: a stable code and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// `invalid_query` or `invalid_topic`.
    pub code: &'static str,
    /// What is wrong, for the client.
    pub message: String,
}

fn invalid(code: &'static str, message: String) -> QueryError {
    QueryError { code, message }
}

impl Query {
    /// Parses a raw query string (without the `?`).
    pub fn parse(raw: &str) -> Result<Query, QueryError> {
        let mut query = Query::default();
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            match &*name {
                "topic" => {
                    check_topic(&value)?;
                    query.topics.push(value.into_owned());
                }
                "access_token" => once(&mut query.access_token, "access_token", value.into_owned())?,
                "last_event_id" => once(&mut query.last_event_id, "last_event_id", value.into_owned())?,
                "cursor" => once(&mut query.cursor, "cursor", value.into_owned())?,
                "timeout" => once(&mut query.timeout, "timeout", value.into_owned())?,
                "ticket" => once(&mut query.ticket, "ticket", value.into_owned())?,
                "latest" => {
                    query.latest = match &*value {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(invalid("invalid_query", "latest is 1 or 0".to_owned())),
                    }
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

fn once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), QueryError> {
    if slot.is_some() {
        return Err(invalid("invalid_query", format!("{name} is given more than once")));
    }
    *slot = Some(value);
    Ok(())
}

/// A topic name is 1 to [`MAX_TOPIC_BYTES`] bytes of printable UTF-8 (no control characters).
pub fn check_topic(name: &str) -> Result<(), QueryError> {
    if name.is_empty() || name.len() > MAX_TOPIC_BYTES {
        return Err(invalid(
            "invalid_topic",
            format!("a topic name is 1 to {MAX_TOPIC_BYTES} bytes long"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_topic",
            "a topic name may not contain control characters".to_owned(),
        ));
    }
    // `form_urlencoded` replaces bytes that are not UTF-8 with U+FFFD.
    if name.contains('\u{FFFD}') {
        return Err(invalid("invalid_topic", "a topic name must be valid UTF-8".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_tokens_and_cursors() {
        let q = Query::parse("topic=a&topic=orders%2E1&access_token=x.y.z&last_event_id=m1.a&_=17").unwrap();
        assert_eq!(q.topics, ["a", "orders.1"]);
        assert_eq!(q.access_token.as_deref(), Some("x.y.z"));
        assert_eq!(q.last_event_id.as_deref(), Some("m1.a"));
        assert_eq!(Query::parse("").unwrap(), Query::default());
        assert_eq!(Query::parse("topic=a+b").unwrap().topics, ["a b"]);
    }

    #[test]
    fn bad_queries_are_named() {
        for (raw, code) in [
            ("topic=", "invalid_topic"),
            ("topic=%0A", "invalid_topic"),
            ("topic=%FF", "invalid_topic"),
            (&format!("topic={}", "x".repeat(257)), "invalid_topic"),
            ("access_token=a&access_token=b", "invalid_query"),
            ("last_event_id=1&last_event_id=2", "invalid_query"),
            ("latest=yes", "invalid_query"),
        ] {
            assert_eq!(Query::parse(raw).unwrap_err().code, code, "{raw}");
        }
        assert!(
            Query::parse(&format!("topic={}", "é".repeat(128))).is_ok(),
            "256 bytes is the limit"
        );
    }
}

//! Collections of events on the internal API (docs/collections.md): a backend inserts JSON events
//! into a collection — published at once or at `publish_at` on the collection's topic — cancels
//! one before it fires, and reads the immutable log back.
//!
//! ```text
//! POST /v2/collections/{c}/events              {"event","data","publish_at"?} → 201 the stored event
//! GET  /v2/collections/{c}/events?state=&limit=&after=   → {"events":[…],"next":cursor|null}
//! GET  /v2/collections/{c}/events/{id}         → the event
//! POST /v2/collections/{c}/events/{id}/cancel  → 200 cancelled | 409 already_published | 404
//! ```
//!
//! A collection lives in the namespace of the token's issuer, like its topic.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::{InternalState, error, json_response};
use crate::auth::Principal;
use crate::store::events::{Cancelled, Listing};
use crate::store::writer::Inserted;
use crate::store::{EventState, NewEvent, Store, StoreError};

/// Longest collection name, bytes.
pub(super) const MAX_COLLECTION_BYTES: usize = 128;
/// Longest event name, bytes.
pub(super) const MAX_EVENT_BYTES: usize = 256;
/// Furthest ahead an event may be scheduled: a year, ms.
const MAX_AHEAD_MS: i64 = 365 * 24 * 3600 * 1000;

/// A refused request: its status, code and message, answered in the API's error shape.
#[derive(Debug)]
pub(super) struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        code,
        message: message.into(),
    }
}

fn unavailable(e: StoreError) -> Refused {
    tracing::warn!(error = %e, "collection request refused: the store is unavailable");
    Refused {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "store_unavailable",
        message: "The store is unavailable: nothing was changed; retry later".into(),
    }
}

/// The store, or the 503 of a node without one.
fn store(state: &InternalState) -> Result<&Arc<Store>, Refused> {
    state.store.as_ref().ok_or_else(|| Refused {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "store_not_configured",
        message: "This node has no store: a cluster node (REDIS_URL) needs DATABASE_URL=postgres://… for collections"
            .into(),
    })
}

/// A collection name: 1–128 bytes of letters, digits, `.`, `_` and `-`.
pub(super) fn check_collection(name: &str) -> Result<(), Refused> {
    let fine = !name.is_empty()
        && name.len() <= MAX_COLLECTION_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fine {
        Ok(())
    } else {
        Err(bad(
            "invalid_collection",
            format!("a collection name is 1 to {MAX_COLLECTION_BYTES} letters, digits, '.', '_' or '-'"),
        ))
    }
}

fn check_id(id: &str) -> Result<(), Refused> {
    match uuid::Uuid::try_parse(id) {
        Ok(_) => Ok(()),
        Err(_) => Err(bad(
            "invalid_event_id",
            "an event id is a UUID, as an insert answers it",
        )),
    }
}

/// The insert body, checked whole.
fn parse_insert(body: &[u8], now_ms: i64) -> Result<(String, String, i64), Refused> {
    let fields: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(bad("invalid_event", "the body must be a JSON object")),
        Err(e) => return Err(bad("invalid_event", format!("the body is not valid JSON: {e}"))),
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["event", "data", "publish_at"].contains(&k.as_str()))
    {
        return Err(bad(
            "invalid_event",
            format!("unknown field {unknown:?}: an event has event, data and publish_at"),
        ));
    }
    let event = match fields.get("event") {
        Some(Value::String(e)) if !e.is_empty() && e.len() <= MAX_EVENT_BYTES && !e.chars().any(char::is_control) => {
            e.clone()
        }
        _ => {
            return Err(bad(
                "invalid_event",
                format!("event must be a string of 1 to {MAX_EVENT_BYTES} bytes without control characters"),
            ));
        }
    };
    let Some(data) = fields.get("data") else {
        return Err(bad("invalid_event", "data is required (any JSON value)"));
    };
    let publish_at = match fields.get("publish_at") {
        None | Some(Value::Null) => now_ms,
        Some(v) => match v.as_i64() {
            Some(at) if at >= 0 && at <= now_ms + MAX_AHEAD_MS => at,
            _ => {
                return Err(bad(
                    "invalid_publish_at",
                    "publish_at is whole milliseconds since the epoch, at most a year ahead (a past time publishes at once)",
                ));
            }
        },
    };
    Ok((event, data.to_string(), publish_at))
}

/// `POST /v2/collections/{c}/events`.
pub(super) async fn insert(
    State(state): State<Arc<InternalState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(collection): Path<String>,
    body: Bytes,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    check_collection(&collection)?;
    let now = state.node.hub.clock().now_ms() as i64;
    let (event, data, publish_at_ms) = parse_insert(&body, now)?;
    let new = NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        namespace: principal.issuer.to_string(),
        collection,
        event,
        data,
        publish_at_ms,
        created_at_ms: now,
        user_id: None,
    };
    // A service (an internal-API token) may insert into any collection of its namespace.
    match store.insert(new, None).await.map_err(unavailable)? {
        Inserted::Stored(stored) => Ok((StatusCode::CREATED, json_response(stored.to_json())).into_response()),
        Inserted::NotOwner => Err(Refused {
            status: StatusCode::FORBIDDEN,
            code: "not_owner",
            message: "the collection belongs to another user".into(),
        }),
    }
}

/// `GET /v2/collections/{c}/events`.
pub(super) async fn list(
    State(state): State<Arc<InternalState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(collection): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    check_collection(&collection)?;
    let listing = parse_listing(&query)?;
    let page = store
        .list(&principal.issuer, &collection, &listing)
        .await
        .map_err(unavailable)?;
    Ok(json_response(json!({
        "events": page.events.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
        "next": page.next.map(|(at, id)| URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))),
    })))
}

/// `state`, `limit` (1–1000, default 100) and `after` (a page's `next`).
pub(super) fn parse_listing(query: &HashMap<String, String>) -> Result<Listing, Refused> {
    if let Some(unknown) = query
        .keys()
        .find(|k| !["state", "limit", "after"].contains(&k.as_str()))
    {
        return Err(bad(
            "invalid_query",
            format!("unknown parameter {unknown:?}: state, limit and after are"),
        ));
    }
    let state = match query.get("state") {
        None => None,
        Some(s) => {
            Some(EventState::parse(s).ok_or_else(|| bad("invalid_query", "state is pending, published or cancelled"))?)
        }
    };
    let limit = match query.get("limit") {
        None => 100,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(bad("invalid_query", "limit is a whole number from 1 to 1000")),
        },
    };
    let after = match query.get("after") {
        None => None,
        Some(cursor) => Some(decode_after(cursor).ok_or_else(|| {
            bad(
                "invalid_cursor",
                "after is the next of a previous page, as given; start again without it",
            )
        })?),
    };
    Ok(Listing { state, after, limit })
}

fn decode_after(cursor: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (at, id) = text.split_once(':')?;
    uuid::Uuid::try_parse(id).ok()?;
    Some((at.parse().ok()?, id.to_owned()))
}

/// `GET /v2/collections/{c}/events/{id}`.
pub(super) async fn get_one(
    State(state): State<Arc<InternalState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    check_collection(&collection)?;
    check_id(&id)?;
    match store
        .event(&principal.issuer, &collection, &id)
        .await
        .map_err(unavailable)?
    {
        Some(event) => Ok(json_response(event.to_json())),
        None => Err(not_found()),
    }
}

fn not_found() -> Refused {
    Refused {
        status: StatusCode::NOT_FOUND,
        code: "event_not_found",
        message: "no such event in this collection".into(),
    }
}

/// `POST /v2/collections/{c}/events/{id}/cancel`.
pub(super) async fn cancel(
    State(state): State<Arc<InternalState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    check_collection(&collection)?;
    check_id(&id)?;
    match store.cancel(&principal.issuer, &collection, &id).await.map_err(unavailable)? {
        Cancelled::Done(event) | Cancelled::AlreadyCancelled(event) => Ok(json_response(event.to_json())),
        Cancelled::AlreadyPublished(event) => Ok((
            StatusCode::CONFLICT,
            json_response(json!({
                "errors": [{"error_code": "already_published", "error_message": "the event was already published: it cannot be cancelled"}],
                "event": event.to_json(),
            })),
        )
            .into_response()),
        Cancelled::Unknown => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_bodies_are_checked_whole() {
        let now = 1_000_000;
        assert_eq!(
            parse_insert(br#"{"event":"e","data":{"a":1}}"#, now).ok(),
            Some(("e".into(), r#"{"a":1}"#.into(), now))
        );
        assert_eq!(
            parse_insert(br#"{"event":"e","data":null,"publish_at":1000500}"#, now)
                .ok()
                .map(|p| p.2),
            Some(1_000_500)
        );
        for bad in [
            &b"nope"[..],
            br#"[1]"#,
            br#"{"data":1}"#,
            br#"{"event":"","data":1}"#,
            br#"{"event":"a\nb","data":1}"#,
            br#"{"event":"e"}"#,
            br#"{"event":"e","data":1,"publish_at":"soon"}"#,
            br#"{"event":"e","data":1,"publish_at":-1}"#,
            br#"{"event":"e","data":1,"when":5}"#,
        ] {
            assert!(parse_insert(bad, now).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let far = format!(r#"{{"event":"e","data":1,"publish_at":{}}}"#, now + MAX_AHEAD_MS + 1);
        assert!(parse_insert(far.as_bytes(), now).is_err());
    }

    #[test]
    fn collection_names_and_cursors_are_checked() {
        assert!(check_collection("orders-2026.eu_1").is_ok());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(check_collection(bad).is_err(), "{bad:?}");
        }
        let id = uuid::Uuid::now_v7().to_string();
        let cursor = URL_SAFE_NO_PAD.encode(format!("5:{id}"));
        assert_eq!(decode_after(&cursor), Some((5, id)));
        for bad in [
            "",
            "!!",
            &URL_SAFE_NO_PAD.encode("5:not-a-uuid"),
            &URL_SAFE_NO_PAD.encode("x"),
        ] {
            assert_eq!(decode_after(bad), None, "{bad:?}");
        }
    }
}

//! Collections of events (docs/collections.md): a backend (internal API) or a user (public API)
//! inserts JSON events into a collection — published at once or at `publish_at` on the
//! collection's topic — cancels one before it fires, and reads the immutable log back. A user
//! acts on the collections it owns (it owns one by creating it with its first insert) or that
//! its token's grants name (`collections/<c>`: `topics` to read, `publish` to insert and cancel).
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

use super::{Caller, Refused, StoreState, bad, json_response, unavailable};
use crate::store::events::{Cancelled, Listing};
use crate::store::writer::Inserted;
use crate::store::{EventState, NewEvent, Store};

/// Longest collection name, bytes.
pub const MAX_COLLECTION_BYTES: usize = 128;
/// Longest event name, bytes.
pub const MAX_EVENT_BYTES: usize = 256;
/// Furthest ahead an event may be scheduled: a year, ms.
const MAX_AHEAD_MS: i64 = 365 * 24 * 3600 * 1000;

/// The store, or the 503 of a node without one.
pub(super) fn store(state: &StoreState) -> Result<&Arc<Store>, Refused> {
    state.store.as_ref().ok_or_else(|| {
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_not_configured",
            "This node has no store: a cluster node (REDIS_URL) needs DATABASE_URL=postgres://… for collections",
        )
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
    State(state): State<Arc<StoreState>>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    body: Bytes,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    check_collection(&collection)?;
    let now = state.clock.now_ms() as i64;
    let (event, data, publish_at_ms) = parse_insert(&body, now)?;
    // A service (an internal-API token), or a user granted the topic, may insert into any
    // collection of its namespace; another user only into its own (or a new one, which it owns).
    let owner = match caller.may(&collection, Access::Write) {
        true => None,
        false => caller.user().map(str::to_owned),
    };
    let new = NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        namespace: caller.namespace().to_owned(),
        collection,
        event,
        data,
        publish_at_ms,
        created_at_ms: now,
        user_id: caller.user().map(str::to_owned),
    };
    match store.insert(new, owner).await.map_err(unavailable)? {
        Inserted::Stored(stored) => Ok((StatusCode::CREATED, json_response(stored.to_json())).into_response()),
        Inserted::NotOwner => Err(Refused::new(
            StatusCode::FORBIDDEN,
            "not_owner",
            "the collection is another user's, and the token does not grant its topic",
        )),
    }
}

/// `GET /v2/collections/{c}/events`.
pub(super) async fn list(
    State(state): State<Arc<StoreState>>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    check_collection(&collection)?;
    let listing = parse_listing(&query)?;
    allowed(store, &caller, &collection, Access::Read).await?;
    let page = store
        .list(caller.namespace(), &collection, &listing)
        .await
        .map_err(unavailable)?;
    Ok(page_json(page))
}

fn page_json(page: crate::store::events::Page) -> Response {
    json_response(json!({
        "events": page.events.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
        "next": page.next.map(|(at, id)| URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))),
    }))
}

/// `GET /v2/users/me/events` (public API): what the calling user inserted, in every collection.
pub(super) async fn mine(
    State(state): State<Arc<StoreState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    let listing = parse_listing(&query)?;
    let Some(user) = caller.user() else {
        return Err(bad(
            "not_a_user",
            "this route lists what a user inserted: use a user's token",
        ));
    };
    let page = store
        .list_by_user(caller.namespace(), user, &listing)
        .await
        .map_err(unavailable)?;
    Ok(page_json(page))
}

/// What a caller wants to do with a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// List or read its events.
    Read,
    /// Insert or cancel.
    Write,
}

/// Whether `caller` may act on `collection` as `access` says: by its grants (or as a service),
/// or as the collection's owner. A collection that does not exist yet is no one's to read.
async fn allowed(store: &Store, caller: &Caller, collection: &str, access: Access) -> Result<(), Refused> {
    if caller.may(collection, access) {
        return Ok(());
    }
    let owner = store
        .collection_owner(caller.namespace(), collection)
        .await
        .map_err(unavailable)?;
    match (owner, caller.user()) {
        (Some(Some(owner)), Some(user)) if owner == user => Ok(()),
        _ => Err(Refused::new(
            StatusCode::FORBIDDEN,
            "not_owner",
            "the collection is another user's, and the token does not grant its topic",
        )),
    }
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
    State(state): State<Arc<StoreState>>,
    Extension(caller): Extension<Caller>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    check_collection(&collection)?;
    check_id(&id)?;
    allowed(store, &caller, &collection, Access::Read).await?;
    match store
        .event(caller.namespace(), &collection, &id)
        .await
        .map_err(unavailable)?
    {
        Some(event) => Ok(json_response(event.to_json())),
        None => Err(not_found()),
    }
}

fn not_found() -> Refused {
    Refused::new(
        StatusCode::NOT_FOUND,
        "event_not_found",
        "no such event in this collection",
    )
}

/// `POST /v2/collections/{c}/events/{id}/cancel`.
pub(super) async fn cancel(
    State(state): State<Arc<StoreState>>,
    Extension(caller): Extension<Caller>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, Refused> {
    let store = store(&state)?;
    check_collection(&collection)?;
    check_id(&id)?;
    allowed(store, &caller, &collection, Access::Write).await?;
    match store.cancel(caller.namespace(), &collection, &id).await.map_err(unavailable)? {
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

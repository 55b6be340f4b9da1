//! Herald: a real-time push gateway. Backends publish messages over HTTP; browsers and apps
//! receive them live over Server-Sent Events or long-polling, and catch up after a short
//! disconnection. Speaks Doctolib's Neurow API (v1, byte-identical) and its own (v2: many
//! topics per connection, grants in tokens, browser tokens, one cursor).
//!
//! # Layout
//! A message travels left to right:
//!
//! ```text
//! backend --POST /v1/publish--> api::internal --> node --> hub --> outbox --> transport --> client
//!                                (auth, parse)   (local or Redis)  (fan-out)     (encode once, write)
//! client --GET /v1|v2/...--> http (accept loop) --> api::v1 | api::v2 (token, grants, cursor)
//!        --> node::Connection (subscriptions + one outbox) --> replay + live
//! ```
//!
//! - [`config`]: the environment turned into one validated [`config::Config`], one file per area.
//! - [`auth`]: tokens (and tickets) to typed principals with their grants.
//! - [`model`]: topics, event ids, messages, shared messages, the cursor.
//! - [`history`]: the per-topic retention ring (pure).
//! - [`hub`]: topics in shards, id assignment, fan-out of shared messages into bounded
//!   outboxes, and the shared liveness timer (keep-alives, timeouts, token expiry).
//! - [`node`]: what faces call — publish, history, connections, tickets — the same whether the
//!   node is alone or on Redis.
//! - [`transport`]: wire formats (each message encoded once per format), the HTTP/1 writer of a
//!   held SSE stream and its HTTP/2 body.
//! - [`backplane`]: what connects the nodes of a cluster (nothing for one node; Redis with
//!   `REDIS_URL`): delivery, shared history, membership, tickets (docs/cluster.md).
//! - [`store`]: the durable store of collections of events (SQLite embedded, or PostgreSQL),
//!   with group commit; [`node`]'s scheduler publishes its events when they fall due.
//! - [`http`]: the public listener shared by the public faces: accept loop, heads, TLS, HTTP/2.
//! - [`api`]: the faces: `v1` (Neurow), `v2` (Herald), `internal` (publish and admin, axum).
//! - [`observe`]: metrics and logs. [`server`]: wiring. [`shutdown`]: stopping. [`clock`]:
//!   injectable time.

pub mod api;
pub mod auth;
pub mod backplane;
pub mod clock;
pub mod config;
pub mod history;
pub mod http;
pub mod hub;
pub mod model;
pub mod node;
pub mod observe;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod transport;

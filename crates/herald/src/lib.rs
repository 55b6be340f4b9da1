//! Herald: a real-time push gateway. Backends publish messages over HTTP; browsers and apps
//! receive them live over Server-Sent Events, and catch up with `Last-Event-ID` after a short
//! disconnection. Wire-compatible with Doctolib's Neurow.
//!
//! # Layout
//! A message travels left to right:
//!
//! ```text
//! backend --POST /v1/publish--> api::internal --> hub --> hub::outbox --> transport::sse --> client
//!                                (auth, publish)   (ids, history, fan-out)   (writer task)
//! client --GET /v1/subscribe--> api::public (auth, Last-Event-ID) --> hub::subscribe --> replay + live
//! ```
//!
//! - [`config`]: the environment turned into one validated [`config::Config`].
//! - [`auth`]: bearer tokens to typed principals, with Neurow's checks and error codes.
//! - [`model`]: topics, event ids, messages.
//! - [`history`]: the per-topic retention ring (pure).
//! - [`hub`]: topics in shards, id assignment, fan-out of shared messages into bounded
//!   outboxes, and the shared liveness timer (keep-alives, timeouts, token expiry).
//! - [`node`]: what faces call — publish, history, and connections (a set of subscriptions and
//!   one outbox) — the same whether the node is alone or on Redis.
//! - [`transport`]: wire formats (each message encoded once per format), the HTTP/1 writer of a
//!   held SSE stream and its HTTP/2 body.
//! - [`backplane`]: what connects the nodes of a cluster (nothing for one node; Redis with
//!   `REDIS_URL`): membership now, shared history and cross-node delivery next (docs/cluster.md).
//! - [`api`]: the public (a raw, lean HTTP/1.1 path; hyper for HTTP/2 over TLS) and internal
//!   (axum) HTTP faces.
//! - [`observe`]: metrics and logs. [`server`]: wiring and shutdown. [`clock`]: injectable time.

pub mod api;
pub mod auth;
pub mod backplane;
pub mod clock;
pub mod config;
pub mod history;
pub mod hub;
pub mod model;
pub mod node;
pub mod observe;
pub mod server;
pub mod shutdown;
pub mod transport;

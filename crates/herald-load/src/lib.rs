//! `herald-load`: load generator and benchmark for Herald, a Neurow-compatible push gateway
//! (HTTP publish, Server-Sent Events subscribe; long-poll and WebSocket on its v2 face), and for
//! Nchan as a reference.
//!
//! # Layout
//! - [`cli`]: command line and environment settings.
//! - [`scenario`]: the scenarios, run by the coordinator process, and the [`scenario::Meter`]
//!   that measures server and tool cost per phase.
//! - [`worker`]: worker processes holding the subscriptions (at most ~9,000 each, because a
//!   process may open only 20,000 files), and the coordinator's side of their JSON-lines protocol.
//! - [`subscriber`], [`poller`], [`websocket`], [`publish`], [`ws_publish`]: the raw SSE, long-poll,
//!   WebSocket, HTTP publish and WebSocket publish clients; [`wire`]: their parsers and framing;
//!   [`net`]: socket options and source-address spreading.
//! - [`checker`], [`payload`], [`stats`]: delivery checks, the timestamped payload, histograms.
//! - [`target`]: Herald's and Nchan's wire formats; [`jwt`]: HS256 tokens.
//! - [`procfs`]: server and tool RSS/CPU from `/proc`.
//! - [`report`], [`compare`], [`plot`], [`timeline`]: the human table, `RESULT {json}` lines, the
//!   Herald/Nchan comparison and the SVG charts (latency against rate; a soak run over time).
//! - [`probe`]: one GET of Herald's `/process_stats`, for the soak samples.
//! - [`http_client`]: a keep-alive JSON client for Herald's store routes (the `store-insert`,
//!   `store-fire-lag` and `login` scenarios).

pub mod checker;
pub mod cli;
pub mod compare;
pub mod http_client;
pub mod jwt;
pub mod net;
pub mod payload;
pub mod plot;
pub mod poller;
pub mod probe;
pub mod procfs;
pub mod publish;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod stats_util;
pub mod subscriber;
pub mod target;
pub mod timeline;
pub mod websocket;
pub mod wire;
pub mod worker;
pub mod ws_publish;

//! The faces of a node: one folder per API, each only translating its routes, tokens and bytes
//! onto the node's core. `v1` is Neurow's subscribe API and `v2` Herald's own, both served by the
//! public listener ([`crate::http`]); `internal` is the publish and admin API (axum).

pub mod internal;
pub mod store;
pub mod v1;
pub mod v2;

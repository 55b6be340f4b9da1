//! The two HTTP faces of a node: the public API (subscribe) and the internal API (publish, admin).

pub mod internal;
pub mod public;

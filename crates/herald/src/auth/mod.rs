//! Authentication: a bearer token in, a typed [`Principal`] or a precise [`AuthError`] out.
//!
//! Nothing here knows HTTP beyond the header value it is handed. The checks and their order are
//! Neurow's (spec §1.2), so a token Neurow accepts, Herald accepts, and a token Neurow refuses gets
//! the same error code and status.

pub mod api_key;
mod cache;
pub mod grants;
pub mod jwks;
pub mod keys;
pub mod passwords;
pub mod public_keys;
pub mod revocation;
pub mod ticket;
pub mod token;
mod verify;

#[cfg(test)]
mod algorithm_tests;

pub use cache::CachingVerifier;
pub use verify::{AuthError, Principal, Verifier, bearer_token};

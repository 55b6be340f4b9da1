//! The publish and admin side: the internal API's address, its publisher token lifetime and the
//! largest publish body.

use std::net::IpAddr;

use super::reader::Reader;

/// The internal (publish and admin) API.
#[derive(Debug, Clone)]
pub struct InternalApiConfig {
    /// Bind address.
    pub host: IpAddr,
    /// Bind port.
    pub port: u16,
    /// Largest `exp - iat` of a publisher token, seconds.
    pub jwt_max_lifetime_s: u64,
    /// Largest publish body, bytes.
    pub publish_max_body_size: usize,
}

/// Reads the internal API's variables.
pub(super) fn read(r: &mut Reader<'_>) -> InternalApiConfig {
    InternalApiConfig {
        host: r.host("INTERNAL_API_HOST"),
        port: r.port("INTERNAL_API_PORT", 3000),
        jwt_max_lifetime_s: r.integer("INTERNAL_API_JWT_MAX_LIFETIME", 1500, 1, 10 * 365 * 86400),
        publish_max_body_size: r.integer("PUBLISH_MAX_BODY_SIZE", 1 << 20, 64, 1 << 30) as usize,
    }
}

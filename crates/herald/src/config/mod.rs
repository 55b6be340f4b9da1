//! Configuration: the environment turned into one typed, validated [`Config`].
//!
//! Every variable is read from an injectable [`Env`] (tests never touch the process environment),
//! the whole set is parsed, and every bad variable is reported with its name, its value (masked
//! when secret) and what was expected, so an operator fixes them all in one go. The table
//! [`SETTINGS`] is the single list of variables: `herald serve --help` prints it and the README
//! mirrors it.
//!
//! # Layout
//! One file per area, each holding that area's types, the `read` that turns its variables into
//! them, and its tests, so that adding a setting touches one area and no file grows past a few
//! hundred lines:
//!
//! - `reader`: the [`Env`] source and the `Reader` every area reads through, which collects the
//!   errors.
//! - `settings`: the [`SETTINGS`] table and [`settings_help`].
//! - `log`, `public` (subscribe API, TLS, stream timing), `internal` (publish API), `history`,
//!   `auth`, `cluster` (Redis), `shutdown`: the areas.
//!
//! This file holds what spans them: [`Config`], the errors, and [`Config::from_env`], which calls
//! each area's `read` in turn and the checks that need two areas at once.

use std::fmt;
use std::time::Duration;

mod accounts;
mod auth;
mod cluster;
mod history;
mod internal;
mod log;
mod public;
mod reader;
mod settings;
mod shutdown;
mod store;
#[cfg(test)]
mod tests;
mod ws;

pub use accounts::AccountsConfig;
pub use auth::AuthSettings;
pub use cluster::{ClusterConfig, RedisUrl};
pub use history::HistoryConfig;
pub use internal::InternalApiConfig;
pub use log::{LogConfig, LogFormat, LogLevel};
pub use public::{DEFAULT_ALLOWED_ORIGINS, PublicApiConfig, SseConfig, TlsFiles};
pub use reader::{Env, ProcessEnv};
pub use settings::{SETTINGS, Setting, settings_help};
pub use store::StoreConfig;
pub use ws::WsConfig;

use reader::Reader;

/// Neurow's clustering and release variables. Herald clusters differently, so it says it ignores them.
const IGNORED_NEUROW_VARIABLES: &[&str] = &[
    "K8S_SELECTOR",
    "K8S_NAMESPACE",
    "EPMD_CLUSTER_MEMBERS",
    "EC2_CLUSTER_TAG",
    "EC2_CLUSTER_VALUE",
    "POD_IP",
    "RELEASE_COOKIE",
    "RELEASE_NODE",
    "RELEASE_DISTRIBUTION",
];

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Logging.
    pub log: LogConfig,
    /// The subscribe side.
    pub public_api: PublicApiConfig,
    /// Stream timing.
    pub sse: SseConfig,
    /// The publish and admin side.
    pub internal_api: InternalApiConfig,
    /// Retention.
    pub history: HistoryConfig,
    /// The WebSocket API's limits.
    pub ws: WsConfig,
    /// Issuers, keys and audiences of both APIs.
    pub auth: AuthSettings,
    /// Frames one subscription may have queued before it is ended as too slow.
    pub outbox_capacity: usize,
    /// How long shutdown waits for streams to end, from the signal.
    pub shutdown_drain_timeout: Duration,
    /// How long shutdown takes to tell every stream to reconnect; less than the drain timeout
    /// unless both are zero.
    pub shutdown_reconnect_window: Duration,
    /// Reported by `/ping`.
    pub revision: Option<String>,
    /// Neurow variables that were set but mean nothing to Herald; logged at start.
    pub ignored_variables: Vec<&'static str>,
    /// The Redis backplane; `None` for a node that works alone, in memory.
    pub cluster: Option<ClusterConfig>,
    /// The durable store of collections.
    pub store: StoreConfig,
    /// Accounts (signup, login).
    pub accounts: AccountsConfig,
}

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    /// The variable.
    pub name: &'static str,
    /// Its value, or `***` when it is secret.
    pub value: String,
    /// What was expected.
    pub reason: String,
}

/// Every bad variable found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<VarError>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  {}={:?}: {}", e.name, e.value, e.reason)?;
        }
        Ok(())
    }
}

impl Config {
    /// Parses the whole configuration from `env`.
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let mut r = Reader::new(env);

        // Errors are reported in the order the areas are read here, which is not the order of
        // SETTINGS; keep it when adding an area.
        let log = log::read(&mut r);
        let (public_api, sse) = public::read(&mut r);
        let internal_api = internal::read(&mut r);
        let history = history::read(&mut r);
        let ws = ws::read(&mut r);
        let auth = auth::read(&mut r);
        let cluster = cluster::read(&mut r);
        cluster::check_issuers_fit_one_slot(&mut r, cluster.as_ref(), &auth);
        let store = store::read(&mut r, cluster.is_some());
        let accounts = accounts::read(&mut r, &auth.public, public_api.jwt_max_lifetime_s);
        let outbox_capacity = r.integer("SUBSCRIPTION_OUTBOX_CAPACITY", 1024, 1, 1 << 20) as usize;
        let shutdown = shutdown::read(&mut r);
        let revision = r
            .raw("GIT_COMMIT_SHA1")
            .or_else(|| option_env!("GIT_COMMIT_SHA1").map(str::to_owned))
            .filter(|s| !s.is_empty());
        let ignored_variables = IGNORED_NEUROW_VARIABLES
            .iter()
            .copied()
            .filter(|name| r.raw(name).is_some())
            .collect();

        if !r.errors.is_empty() {
            return Err(ConfigError(r.errors));
        }
        Ok(Config {
            log,
            public_api,
            sse,
            internal_api,
            history,
            ws,
            auth,
            outbox_capacity,
            shutdown_drain_timeout: shutdown.drain_timeout,
            shutdown_reconnect_window: shutdown.reconnect_window,
            revision,
            ignored_variables,
            cluster,
            store,
            accounts,
        })
    }
}

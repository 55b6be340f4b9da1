//! Configuration: the environment turned into one typed, validated [`Config`].
//!
//! Every variable is read from an injectable [`Env`] (tests never touch the process environment),
//! the whole set is parsed, and every bad variable is reported with its name, its value (masked
//! when secret) and what was expected, so an operator fixes them all in one go. The table
//! [`SETTINGS`] is the single list of variables: `herald serve --help` prints it and the README
//! mirrors it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use regex::Regex;

use crate::auth::keys::{AuthConfig, JwtConfigError, development_auth, parse_jwt_config};

/// One documented setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    /// Its default, as the operator would write it.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// The default `PUBLIC_API_ALLOWED_ORIGINS`: local development origins on any port.
pub const DEFAULT_ALLOWED_ORIGINS: &str = r"https?://(localhost|127\.0\.0\.1)(:[0-9]+)?";

/// The longest default `SHUTDOWN_RECONNECT_WINDOW`, in milliseconds.
const DEFAULT_RECONNECT_WINDOW_MS: u64 = 5_000;

/// Every setting Herald reads, in the order `--help` shows them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "LOG_LEVEL",
        default: "info",
        help: "Least severe level logged: debug, info, warning or error (Elixir's notice, critical, alert and emergency are accepted too). Authentication failures are warnings.",
    },
    Setting {
        name: "LOG_FORMAT",
        default: "TEXT",
        help: "TEXT for human-readable lines, ECS for one JSON object per line with Elastic Common Schema field names (@timestamp, log.level, trace.id, client.ip, ...). Anything else stops start-up.",
    },
    Setting {
        name: "PUBLIC_API_HOST",
        default: "0.0.0.0",
        help: "Address the public (subscribe) API binds to.",
    },
    Setting {
        name: "PUBLIC_API_PORT",
        default: "4000",
        help: "TCP port of the public (subscribe) API; 0 picks a free port.",
    },
    Setting {
        name: "PUBLIC_API_CONTEXT_PATH",
        default: "",
        help: "URL prefix of the public API, e.g. /push serves /push/v1/subscribe. Starts with / and does not end with /.",
    },
    Setting {
        name: "PUBLIC_API_JWT_MAX_LIFETIME",
        default: "120",
        help: "Largest exp - iat, in seconds, accepted for subscriber tokens.",
    },
    Setting {
        name: "PUBLIC_API_MAX_CONNECTIONS",
        default: "infinity",
        help: "Most connections the public API holds at once; over it a request gets 503 with retry-after.",
    },
    Setting {
        name: "PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND",
        default: "infinity",
        help: "New subscriptions a node accepts per second, with a burst of one second's worth, to blunt reconnection storms; over it 503 with a retry-after that spreads the retries.",
    },
    Setting {
        name: "PUBLIC_API_ALLOWED_ORIGINS",
        default: DEFAULT_ALLOWED_ORIGINS,
        help: "Regular expression an Origin must match in full for a CORS preflight to succeed.",
    },
    Setting {
        name: "PREFLIGHT_MAX_AGE",
        default: "86400",
        help: "access-control-max-age of CORS preflight responses, in seconds.",
    },
    Setting {
        name: "SSE_TIMEOUT",
        default: "900000",
        help: "Milliseconds without a message after which a stream ends with event: timeout.",
    },
    Setting {
        name: "SSE_KEEPALIVE",
        default: "600000",
        help: "Milliseconds of silence after which a stream gets event: ping.",
    },
    Setting {
        name: "MAX_HEADER_VALUE_LENGTH",
        default: "8192",
        help: "Longest request header value accepted by the public API, in bytes; longer gets 431.",
    },
    Setting {
        name: "SSL_CERTFILE",
        default: "",
        help: "PEM certificate chain: with SSL_KEYFILE, the public API serves HTTPS, HTTP/2 or HTTP/1.1 as the client chooses (ALPN).",
    },
    Setting {
        name: "SSL_KEYFILE",
        default: "",
        help: "PEM private key of SSL_CERTFILE.",
    },
    Setting {
        name: "INTERNAL_API_HOST",
        default: "0.0.0.0",
        help: "Address the internal (publish and admin) API binds to.",
    },
    Setting {
        name: "INTERNAL_API_PORT",
        default: "3000",
        help: "TCP port of the internal (publish and admin) API; 0 picks a free port.",
    },
    Setting {
        name: "INTERNAL_API_JWT_MAX_LIFETIME",
        default: "1500",
        help: "Largest exp - iat, in seconds, accepted for publisher tokens.",
    },
    Setting {
        name: "PUBLISH_MAX_BODY_SIZE",
        default: "1048576",
        help: "Largest publish request body, in bytes; larger gets 413.",
    },
    Setting {
        name: "HISTORY_MIN_DURATION",
        default: "30",
        help: "Seconds a message stays replayable at least; it is gone after twice that. 0 keeps no history.",
    },
    Setting {
        name: "HISTORY_MAX_MESSAGES_PER_TOPIC",
        default: "1000",
        help: "Most messages kept per topic; the newest stay.",
    },
    Setting {
        name: "HISTORY_MAX_BYTES",
        default: "268435456",
        help: "Most bytes of history over all topics; the oldest messages go first.",
    },
    Setting {
        name: "SUBSCRIPTION_OUTBOX_CAPACITY",
        default: "1024",
        help: "Frames queued for one slow subscriber before its stream ends with event: reconnect.",
    },
    Setting {
        name: "SHUTDOWN_DRAIN_TIMEOUT",
        default: "10000",
        help: "Milliseconds Herald waits for streams to end after SIGTERM before it exits, counted from the signal.",
    },
    Setting {
        name: "SHUTDOWN_RECONNECT_WINDOW",
        default: "5000",
        help: "Milliseconds over which shutdown spreads the event: reconnect of the open streams, so clients do not all come back at once. 0 tells them all at once. Must be less than SHUTDOWN_DRAIN_TIMEOUT; unset, it is half of it, at most 5000.",
    },
    Setting {
        name: "REDIS_URL",
        default: "",
        help: "Unset: this node works alone, in memory. A redis:// URL: every node with the same REDIS_URL forms one cluster (docs/cluster.md). Several comma-separated URLs shard topics over independent Redis servers; every node must list them in the same order.",
    },
    Setting {
        name: "REDIS_CLUSTER",
        default: "false",
        help: "true when REDIS_URL names nodes of one Redis Cluster (7.0 or newer): the URLs are only where to discover it, topics spread over its slots, and live messages use sharded pub/sub. false: the URLs are independent servers.",
    },
    Setting {
        name: "CLUSTER_NODE_TTL",
        default: "5000",
        help: "With REDIS_URL: milliseconds a node stays listed by /nodes after its last heartbeat; it heartbeats every third of that.",
    },
    Setting {
        name: "CLUSTER_RESUME_TIMEOUT",
        default: "30000",
        help: "With REDIS_URL: milliseconds a stream that resumes (Last-Event-ID) stays open while Redis cannot be read, catching up once it is back; past this it ends with event: reconnect.",
    },
    Setting {
        name: "JWT_CONFIG",
        default: "(development keys)",
        help: "Neurow's JSON: {\"service_name\": audience, \"clients\": {issuer: secret or [secrets]}}. Unset: the development issuers test_issuer1 and test_issuer2, with a loud warning.",
    },
    Setting {
        name: "VERBOSE_AUTHENTICATION_ERRORS",
        default: "false",
        help: "true returns the precise code of a 403 authentication error instead of invalid_authentication_token.",
    },
    Setting {
        name: "GIT_COMMIT_SHA1",
        default: "(build revision)",
        help: "Revision reported by /ping; defaults to the one Herald was built from, if known.",
    },
];

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

/// A source of configuration variables.
pub trait Env {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

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
}

/// A cluster of nodes over Redis (`REDIS_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// One URL per shard, in the operator's order (the order decides each topic's shard).
    pub redis_urls: Vec<RedisUrl>,
    /// How long a node stays listed after its last heartbeat.
    pub node_ttl: Duration,
    /// `REDIS_CLUSTER`: the URLs are seeds of one Redis Cluster, not independent shards.
    pub redis_cluster: bool,
    /// `CLUSTER_RESUME_TIMEOUT`: how long a resuming subscription stays open while the shared
    /// history cannot be read, before it is told to reconnect.
    pub resume_timeout: Duration,
}

/// A Redis URL that parsed; its password prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Parses one URL the way the Redis client will use it.
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        use redis::IntoConnectionInfo;
        match s.into_connection_info() {
            Ok(_) => Ok(RedisUrl(s.to_owned())),
            Err(e) => Err(format!(
                "{}: expected a URL such as redis://127.0.0.1:6379 or redis://:password@host:6379/0",
                e.detail().unwrap_or("not a Redis URL")
            )),
        }
    }

    /// The URL, secrets included, for the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_userinfo(&self.0))
    }
}

/// `scheme://user:secret@host` as `scheme://***@host`.
fn mask_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}***{}", &url[..scheme_end + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Logging settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Least severe level written.
    pub level: LogLevel,
    /// Line format.
    pub format: LogFormat,
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Normal operation.
    Info,
    /// Something is off.
    Warning,
    /// Something failed.
    Error,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, Elastic Common Schema.
    Ecs,
}

/// The public (subscribe) API.
#[derive(Debug, Clone)]
pub struct PublicApiConfig {
    /// Bind address.
    pub host: IpAddr,
    /// Bind port.
    pub port: u16,
    /// Prefix of `/v1/subscribe`.
    pub context_path: String,
    /// Largest `exp - iat` of a subscriber token, seconds.
    pub jwt_max_lifetime_s: u64,
    /// Cap on concurrent connections; `None` is unlimited.
    pub max_connections: Option<usize>,
    /// New subscriptions admitted per second; `None` is unlimited.
    pub max_subscriptions_per_second: Option<u32>,
    /// CORS origins allowed by a preflight; anchored.
    pub allowed_origins: Regex,
    /// `access-control-max-age`, seconds.
    pub preflight_max_age_s: u64,
    /// Longest request header value, bytes.
    pub max_header_value_length: usize,
    /// HTTPS, when both files are set.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the public API's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `SSL_CERTFILE`.
    pub cert_file: std::path::PathBuf,
    /// `SSL_KEYFILE`.
    pub key_file: std::path::PathBuf,
}

/// Stream timing.
#[derive(Debug, Clone, Copy)]
pub struct SseConfig {
    /// No message for this long ends the stream with `timeout`.
    pub timeout: Duration,
    /// Silence for this long sends a `ping`.
    pub keepalive: Duration,
}

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

/// Retention of history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryConfig {
    /// A message stays replayable at least this long, and is gone after twice this.
    pub min_duration: Duration,
    /// Most messages kept per topic.
    pub max_messages_per_topic: usize,
    /// Most bytes kept over all topics.
    pub max_bytes: usize,
}

/// Authentication settings of both APIs.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Subscriber tokens.
    pub public: AuthConfig,
    /// Publisher tokens.
    pub internal: AuthConfig,
    /// Whether 403s say precisely why.
    pub verbose_errors: bool,
    /// True when `JWT_CONFIG` was unset and the public development keys are in use.
    pub development_keys: bool,
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

/// Reads variables and collects every error instead of stopping at the first.
struct Reader<'a> {
    env: &'a dyn Env,
    errors: Vec<VarError>,
}

impl Reader<'_> {
    fn raw(&self, name: &'static str) -> Option<String> {
        self.env.var(name)
    }

    fn fail(&mut self, name: &'static str, value: &str, reason: impl Into<String>) {
        self.errors.push(VarError {
            name,
            value: value.to_owned(),
            reason: reason.into(),
        });
    }

    /// Parses `name` with `parse`, or returns `default` when unset.
    fn parse<T>(&mut self, name: &'static str, default: T, parse: impl FnOnce(&str) -> Result<T, String>) -> T {
        match self.raw(name) {
            None => default,
            Some(value) => match parse(value.trim()) {
                Ok(v) => v,
                Err(reason) => {
                    self.fail(name, &value, reason);
                    default
                }
            },
        }
    }

    fn integer(&mut self, name: &'static str, default: u64, min: u64, max: u64) -> u64 {
        self.parse(name, default, |s| match s.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!("expected a whole number from {min} to {max}")),
        })
    }

    fn port(&mut self, name: &'static str, default: u16) -> u16 {
        self.integer(name, u64::from(default), 0, 65535) as u16
    }

    fn host(&mut self, name: &'static str) -> IpAddr {
        let default = IpAddr::from([0, 0, 0, 0]);
        self.parse(name, default, |s| {
            s.parse::<IpAddr>()
                .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1".to_owned())
        })
    }

    fn boolean(&mut self, name: &'static str, default: bool) -> bool {
        self.parse(name, default, |s| match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }
}

impl Config {
    /// Parses the whole configuration from `env`.
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let mut r = Reader {
            env,
            errors: Vec::new(),
        };

        let log = LogConfig {
            level: r.parse("LOG_LEVEL", LogLevel::Info, parse_log_level),
            // Neurow takes only the uppercase words; lowercase is accepted too, as LOG_LEVEL is.
            format: r.parse("LOG_FORMAT", LogFormat::Text, |s| {
                if s.eq_ignore_ascii_case("TEXT") {
                    Ok(LogFormat::Text)
                } else if s.eq_ignore_ascii_case("ECS") {
                    Ok(LogFormat::Ecs)
                } else {
                    Err("expected TEXT or ECS".to_owned())
                }
            }),
        };

        let allowed_origins = r.parse(
            "PUBLIC_API_ALLOWED_ORIGINS",
            anchored(DEFAULT_ALLOWED_ORIGINS).expect("the default origin pattern compiles"),
            |s| anchored(s).map_err(|e| format!("expected a regular expression: {e}")),
        );
        let public_api = PublicApiConfig {
            host: r.host("PUBLIC_API_HOST"),
            port: r.port("PUBLIC_API_PORT", 4000),
            context_path: r.parse("PUBLIC_API_CONTEXT_PATH", String::new(), |s| {
                if s.is_empty() || (s.starts_with('/') && !s.ends_with('/')) {
                    Ok(s.to_owned())
                } else {
                    Err("expected an empty value or a path that starts with / and does not end with /".to_owned())
                }
            }),
            jwt_max_lifetime_s: r.integer("PUBLIC_API_JWT_MAX_LIFETIME", 120, 1, 10 * 365 * 86400),
            max_connections: r.parse("PUBLIC_API_MAX_CONNECTIONS", None, |s| {
                if s.eq_ignore_ascii_case("infinity") {
                    return Ok(None);
                }
                match s.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err("expected infinity or a whole number above 0".to_owned()),
                }
            }),
            max_subscriptions_per_second: r.parse("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", None, |s| {
                let max = crate::api::public::admission::MAX_RATE;
                if s.eq_ignore_ascii_case("infinity") {
                    return Ok(None);
                }
                match s.parse::<u32>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(format!("expected infinity or a whole number from 1 to {max}")),
                }
            }),
            allowed_origins,
            preflight_max_age_s: r.integer("PREFLIGHT_MAX_AGE", 86400, 0, u64::from(u32::MAX)),
            max_header_value_length: r.integer("MAX_HEADER_VALUE_LENGTH", 8192, 64, 1 << 20) as usize,
            tls: None,
        };

        let sse = SseConfig {
            timeout: Duration::from_millis(r.integer("SSE_TIMEOUT", 900_000, 1, u64::from(u32::MAX))),
            keepalive: Duration::from_millis(r.integer("SSE_KEEPALIVE", 600_000, 1, u64::from(u32::MAX))),
        };

        let tls = match (
            r.raw("SSL_CERTFILE").filter(|v| !v.is_empty()),
            r.raw("SSL_KEYFILE").filter(|v| !v.is_empty()),
        ) {
            (None, None) => None,
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file: cert_file.into(),
                key_file: key_file.into(),
            }),
            (Some(cert), None) => {
                r.fail(
                    "SSL_KEYFILE",
                    "",
                    format!("must be set too, since SSL_CERTFILE is ({cert})"),
                );
                None
            }
            (None, Some(key)) => {
                r.fail(
                    "SSL_CERTFILE",
                    "",
                    format!("must be set too, since SSL_KEYFILE is ({key})"),
                );
                None
            }
        };

        let mut public_api = public_api;
        public_api.tls = tls;
        let internal_api = InternalApiConfig {
            host: r.host("INTERNAL_API_HOST"),
            port: r.port("INTERNAL_API_PORT", 3000),
            jwt_max_lifetime_s: r.integer("INTERNAL_API_JWT_MAX_LIFETIME", 1500, 1, 10 * 365 * 86400),
            publish_max_body_size: r.integer("PUBLISH_MAX_BODY_SIZE", 1 << 20, 64, 1 << 30) as usize,
        };

        let history = HistoryConfig {
            min_duration: Duration::from_secs(r.integer("HISTORY_MIN_DURATION", 30, 0, 86400 * 7)),
            max_messages_per_topic: r.integer("HISTORY_MAX_MESSAGES_PER_TOPIC", 1000, 0, 10_000_000) as usize,
            max_bytes: r.integer("HISTORY_MAX_BYTES", 256 << 20, 0, 1 << 40) as usize,
        };

        let verbose_errors = r.boolean("VERBOSE_AUTHENTICATION_ERRORS", false);
        let (public, internal, development_keys) = match r.raw("JWT_CONFIG") {
            None => {
                let (public, internal) = development_auth();
                (public, internal, true)
            }
            Some(json) => match parse_jwt_config(&json) {
                Ok(auth) => (auth.clone(), auth, false),
                Err(e) => {
                    // The value holds secrets: never echo it.
                    r.fail("JWT_CONFIG", "***", jwt_config_reason(&e));
                    let (public, internal) = development_auth();
                    (public, internal, false)
                }
            },
        };

        let node_ttl = Duration::from_millis(r.integer("CLUSTER_NODE_TTL", 5_000, 300, 3_600_000));
        let redis_cluster = r.boolean("REDIS_CLUSTER", false);
        let resume_timeout = Duration::from_millis(r.integer("CLUSTER_RESUME_TIMEOUT", 30_000, 1_000, 3_600_000));
        let cluster = match r.raw("REDIS_URL").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(value) => {
                let parsed: Result<Vec<RedisUrl>, String> =
                    value.split(',').map(|u| RedisUrl::parse(u.trim())).collect();
                match parsed {
                    Ok(redis_urls) => Some(ClusterConfig {
                        redis_urls,
                        node_ttl,
                        redis_cluster,
                        resume_timeout,
                    }),
                    Err(reason) => {
                        // The value may hold a password: never echo it.
                        r.fail("REDIS_URL", &mask_userinfo(&value), reason);
                        None
                    }
                }
            }
        };
        if redis_cluster && cluster.is_some() {
            // A topic's keys share the hash tag `{issuer-name}`; Redis ignores an empty tag, so for
            // an issuer starting with `}` the keys would land in different slots (CROSSSLOT).
            if let Some(issuer) = public
                .issuers()
                .iter()
                .chain(internal.issuers())
                .find(|i| i.name.starts_with('}'))
            {
                r.fail(
                    "REDIS_CLUSTER",
                    "true",
                    format!(
                        "issuer {:?} in JWT_CONFIG starts with '}}', which Redis Cluster cannot keep in one slot; rename the issuer or use REDIS_CLUSTER=false",
                        &*issuer.name
                    ),
                );
            }
        }

        let outbox_capacity = r.integer("SUBSCRIPTION_OUTBOX_CAPACITY", 1024, 1, 1 << 20) as usize;
        let errors_before_drain = r.errors.len();
        let drain_ms = r.integer("SHUTDOWN_DRAIN_TIMEOUT", 10_000, 0, 3_600_000);
        let drain_is_valid = r.errors.len() == errors_before_drain;
        let window_ms = match r.raw("SHUTDOWN_RECONNECT_WINDOW") {
            // Half the drain leaves the other half for the last streams' final writes.
            None => (drain_ms / 2).min(DEFAULT_RECONNECT_WINDOW_MS),
            Some(value) => {
                let window_ms = r.integer("SHUTDOWN_RECONNECT_WINDOW", 0, 0, 3_600_000);
                if drain_is_valid && window_ms > 0 && window_ms >= drain_ms {
                    r.fail(
                        "SHUTDOWN_RECONNECT_WINDOW",
                        &value,
                        format!(
                            "must be less than SHUTDOWN_DRAIN_TIMEOUT ({drain_ms}), which bounds the whole \
                             shutdown and must leave time for the last streams to end; shorten the window \
                             or raise SHUTDOWN_DRAIN_TIMEOUT"
                        ),
                    );
                }
                window_ms
            }
        };
        let shutdown_drain_timeout = Duration::from_millis(drain_ms);
        let shutdown_reconnect_window = Duration::from_millis(window_ms);
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
            auth: AuthSettings {
                public,
                internal,
                verbose_errors,
                development_keys,
            },
            outbox_capacity,
            shutdown_drain_timeout,
            shutdown_reconnect_window,
            revision,
            ignored_variables,
            cluster,
        })
    }
}

fn jwt_config_reason(e: &JwtConfigError) -> String {
    format!("{e}; expected JSON like {{\"service_name\":\"my-audience\",\"clients\":{{\"my-issuer\":\"secret\"}}}}")
}

fn parse_log_level(s: &str) -> Result<LogLevel, String> {
    match s.to_ascii_lowercase().as_str() {
        "debug" | "trace" => Ok(LogLevel::Debug),
        "info" | "notice" => Ok(LogLevel::Info),
        "warning" | "warn" => Ok(LogLevel::Warning),
        "error" | "critical" | "alert" | "emergency" => Ok(LogLevel::Error),
        _ => Err("expected debug, info, warning or error".to_owned()),
    }
}

/// Compiles `pattern` so that it must match a whole string.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// The text `herald serve --help` appends: every variable with its default.
pub fn settings_help() -> String {
    let mut out = String::from("Settings (environment variables):\n");
    for s in SETTINGS {
        let default = if s.default.is_empty() { "(unset)" } else { s.default };
        out.push_str(&format!(
            "  {}\n      {}\n      [default: {}]\n",
            s.name, s.help, default
        ));
    }
    out
}

#[cfg(test)]
mod tests {

    /// The README's configuration table and docs/configuration.md are written by hand: every
    /// setting must be in both, with its default.
    #[test]
    fn every_setting_is_documented() {
        let readme = include_str!("../../../README.md");
        let guide = include_str!("../../../docs/configuration.md");
        for setting in SETTINGS {
            let row = format!("| `{}` |", setting.name);
            let line = readme.lines().find(|l| l.starts_with(&row));
            // A `|` inside a table cell is written `\|`.
            let line = line
                .unwrap_or_else(|| panic!("README's table lacks {}", setting.name))
                .replace("\\|", "|");
            if !setting.default.is_empty() {
                // A default in parentheses describes rather than quotes a value.
                let shown = if setting.default.starts_with('(') {
                    setting.default.to_owned()
                } else {
                    format!("`{}`", setting.default)
                };
                assert!(
                    line.contains(&shown),
                    "README gives another default for {}: {line}",
                    setting.name
                );
            }
            assert!(
                guide.contains(&format!("`{}`", setting.name)),
                "docs/configuration.md lacks {}",
                setting.name
            );
        }
    }

    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_env(&vars)
    }

    #[test]
    fn defaults_match_neurow_except_the_documented_public_lifetime() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.public_api.port, 4000);
        assert_eq!(c.internal_api.port, 3000);
        assert_eq!(c.public_api.jwt_max_lifetime_s, 120);
        assert_eq!(c.internal_api.jwt_max_lifetime_s, 1500);
        assert_eq!(c.public_api.context_path, "");
        assert_eq!(c.public_api.max_connections, None);
        assert_eq!(c.public_api.max_subscriptions_per_second, None);
        assert_eq!(c.shutdown_drain_timeout, Duration::from_millis(10_000));
        assert_eq!(c.shutdown_reconnect_window, Duration::from_millis(5_000));
        assert_eq!(c.public_api.preflight_max_age_s, 86400);
        assert_eq!(c.public_api.max_header_value_length, 8192);
        assert_eq!(c.sse.timeout, Duration::from_millis(900_000));
        assert_eq!(c.sse.keepalive, Duration::from_millis(600_000));
        assert_eq!(c.history.min_duration, Duration::from_secs(30));
        assert_eq!(c.history.max_messages_per_topic, 1000);
        assert_eq!(c.history.max_bytes, 256 << 20);
        assert_eq!(c.internal_api.publish_max_body_size, 1 << 20);
        assert!(!c.auth.verbose_errors);
        assert!(c.auth.development_keys);
        assert_eq!(
            c.log,
            LogConfig {
                level: LogLevel::Info,
                format: LogFormat::Text
            }
        );
    }

    #[test]
    fn every_bad_variable_is_reported_by_name() {
        let err = parse(&[
            ("PUBLIC_API_PORT", "eighty"),
            ("SSE_TIMEOUT", "-1"),
            ("LOG_FORMAT", "XML"),
            ("VERBOSE_AUTHENTICATION_ERRORS", "maybe"),
            ("PUBLIC_API_ALLOWED_ORIGINS", "("),
            ("PUBLIC_API_CONTEXT_PATH", "push/"),
            ("PUBLIC_API_MAX_CONNECTIONS", "0"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "LOG_FORMAT",
                "PUBLIC_API_ALLOWED_ORIGINS",
                "PUBLIC_API_PORT",
                "PUBLIC_API_CONTEXT_PATH",
                "PUBLIC_API_MAX_CONNECTIONS",
                "SSE_TIMEOUT",
                "VERBOSE_AUTHENTICATION_ERRORS",
            ]
        );
        let text = err.to_string();
        assert!(
            text.contains("PUBLIC_API_PORT=\"eighty\": expected a whole number from 0 to 65535"),
            "{text}"
        );
    }

    #[test]
    fn the_subscription_rate_is_infinity_or_a_positive_number() {
        let c = parse(&[("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", " 500 ")]).unwrap();
        assert_eq!(c.public_api.max_subscriptions_per_second, Some(500));
        let c = parse(&[("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", "Infinity")]).unwrap();
        assert_eq!(c.public_api.max_subscriptions_per_second, None);
        for bad in ["0", "-1", "2000000", "fast", ""] {
            let err = parse(&[("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", bad)]).unwrap_err();
            assert_eq!(
                err.0[0].reason, "expected infinity or a whole number from 1 to 1000000",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_reconnect_window_defaults_to_half_the_drain_at_most_five_seconds() {
        let window = |vars: &[(&str, &str)]| parse(vars).unwrap().shutdown_reconnect_window.as_millis();
        assert_eq!(window(&[("SHUTDOWN_DRAIN_TIMEOUT", "1000")]), 500);
        assert_eq!(window(&[("SHUTDOWN_DRAIN_TIMEOUT", "60000")]), 5000);
        assert_eq!(window(&[("SHUTDOWN_DRAIN_TIMEOUT", "0")]), 0);
        assert_eq!(
            window(&[
                ("SHUTDOWN_DRAIN_TIMEOUT", "60000"),
                ("SHUTDOWN_RECONNECT_WINDOW", "30000")
            ]),
            30000
        );
        assert_eq!(
            window(&[("SHUTDOWN_DRAIN_TIMEOUT", "0"), ("SHUTDOWN_RECONNECT_WINDOW", "0")]),
            0
        );
    }

    #[test]
    fn a_reconnect_window_not_shorter_than_the_drain_names_both_variables() {
        let err = parse(&[("SHUTDOWN_RECONNECT_WINDOW", "10000")]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].name, "SHUTDOWN_RECONNECT_WINDOW");
        assert_eq!(err.0[0].value, "10000");
        assert!(
            err.0[0].reason.contains("less than SHUTDOWN_DRAIN_TIMEOUT (10000)"),
            "{}",
            err.0[0].reason
        );
        // An invalid drain timeout is reported alone, not compared against.
        let err = parse(&[
            ("SHUTDOWN_DRAIN_TIMEOUT", "soon"),
            ("SHUTDOWN_RECONNECT_WINDOW", "20000"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|e| e.name).collect();
        assert_eq!(names, ["SHUTDOWN_DRAIN_TIMEOUT"]);
    }

    #[test]
    fn log_settings_accept_any_case() {
        let c = parse(&[("LOG_FORMAT", "ecs"), ("LOG_LEVEL", "WARNING")]).unwrap();
        assert_eq!(
            c.log,
            LogConfig {
                level: LogLevel::Warning,
                format: LogFormat::Ecs
            }
        );
        let err = parse(&[("LOG_FORMAT", "json"), ("LOG_LEVEL", "loud")]).unwrap_err();
        assert_eq!(err.0[0].name, "LOG_LEVEL");
        assert_eq!(err.0[1].name, "LOG_FORMAT");
        assert_eq!(err.0[1].reason, "expected TEXT or ECS");
    }

    #[test]
    fn a_malformed_jwt_config_is_named_and_its_secrets_are_not_echoed() {
        let err = parse(&[("JWT_CONFIG", "{\"clients\":{\"a\":\"topsecret\"}")]).unwrap_err();
        assert_eq!(err.0[0].name, "JWT_CONFIG");
        assert!(!err.to_string().contains("topsecret"));
    }

    #[test]
    fn jwt_config_sets_one_audience_and_issuer_list_for_both_apis() {
        let c = parse(&[(
            "JWT_CONFIG",
            r#"{"local_name":"neurow","service_name":"svc","algorithm":"HS256","clients":{"test":"secret","rot":["a","b"]}}"#,
        )])
        .unwrap();
        assert!(!c.auth.development_keys);
        assert_eq!(c.auth.public.audience, "svc");
        assert_eq!(c.auth.internal.audience, "svc");
        assert_eq!(c.auth.public.issuer("rot").unwrap().secrets.len(), 2);
    }

    #[test]
    fn allowed_origins_must_match_in_full() {
        let c = parse(&[]).unwrap();
        let re = &c.public_api.allowed_origins;
        assert!(re.is_match("http://localhost:3000"));
        assert!(re.is_match("https://127.0.0.1"));
        assert!(!re.is_match("http://localhost.evil.com"));
        assert!(!re.is_match("http://evil.com/http://localhost"));
    }

    #[test]
    fn tls_needs_both_files() {
        let err = parse(&[("SSL_CERTFILE", "/tmp/cert.pem")]).unwrap_err();
        assert_eq!(err.0[0].name, "SSL_KEYFILE");
        let c = parse(&[("SSL_CERTFILE", "/c.pem"), ("SSL_KEYFILE", "/k.pem")]).unwrap();
        assert_eq!(c.public_api.tls.unwrap().key_file, std::path::PathBuf::from("/k.pem"));
    }

    #[test]
    fn ignored_neurow_cluster_variables_are_listed() {
        let c = parse(&[("K8S_SELECTOR", "app=neurow")]).unwrap();
        assert_eq!(c.ignored_variables, ["K8S_SELECTOR"]);
    }

    #[test]
    fn no_redis_url_means_a_single_node() {
        assert_eq!(parse(&[]).unwrap().cluster, None);
        assert_eq!(parse(&[("REDIS_URL", "")]).unwrap().cluster, None);
    }

    #[test]
    fn several_redis_urls_are_shards_in_the_given_order() {
        let c = parse(&[("REDIS_URL", "redis://10.0.0.2:6379, redis://10.0.0.1:6380/2")])
            .unwrap()
            .cluster
            .unwrap();
        let urls: Vec<_> = c.redis_urls.iter().map(RedisUrl::expose).collect();
        assert_eq!(urls, ["redis://10.0.0.2:6379", "redis://10.0.0.1:6380/2"]);
        assert_eq!(c.node_ttl, Duration::from_millis(5_000));
        assert!(!c.redis_cluster);
    }

    #[test]
    fn redis_cluster_makes_the_urls_seeds_of_one_cluster() {
        let c = parse(&[("REDIS_URL", "redis://10.0.0.2:7000"), ("REDIS_CLUSTER", "true")])
            .unwrap()
            .cluster
            .unwrap();
        assert!(c.redis_cluster);
        let err = parse(&[("REDIS_URL", "redis://h:1"), ("REDIS_CLUSTER", "maybe")]).unwrap_err();
        assert_eq!(err.0[0].name, "REDIS_CLUSTER");
    }

    #[test]
    fn an_issuer_that_redis_cluster_cannot_keep_in_one_slot_is_refused() {
        let jwt = r#"{"service_name":"s","clients":{"}odd":"a-secret-of-enough-length-0123456789"}}"#;
        let on_cluster = [
            ("REDIS_URL", "redis://h:1"),
            ("REDIS_CLUSTER", "true"),
            ("JWT_CONFIG", jwt),
        ];
        let err = parse(&on_cluster).unwrap_err();
        assert_eq!(err.0[0].name, "REDIS_CLUSTER");
        assert!(err.to_string().contains("}odd"), "{err}");
        assert!(!err.to_string().contains("a-secret"), "{err}");
        // Independent servers have no slots: the same issuer is fine there.
        assert!(parse(&[("REDIS_URL", "redis://h:1"), ("JWT_CONFIG", jwt)]).is_ok());
    }

    #[test]
    fn a_bad_redis_url_is_named_and_its_password_is_not_echoed() {
        let err = parse(&[("REDIS_URL", "redis://:hunter2@h:6379,http://x")]).unwrap_err();
        assert_eq!(err.0[0].name, "REDIS_URL");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redis://"), "{text}");
        let c = parse(&[("REDIS_URL", "redis://:hunter2@h:6379")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = settings_help();
        for s in SETTINGS {
            assert!(help.contains(s.name));
        }
        assert!(help.contains("[default: 4000]"));
    }
}

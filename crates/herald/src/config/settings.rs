//! The one list of variables Herald reads, with defaults and help: `herald serve --help` prints it,
//! and the README and docs/configuration.md mirror it (a test checks they do). It is one table,
//! not a slice per area, because its order is the order of `--help` and a `const` slice cannot
//! be assembled from parts.

use super::public::DEFAULT_ALLOWED_ORIGINS;

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
        name: "PUBLIC_API_MAX_TOPICS_PER_CONNECTION",
        default: "64",
        help: "Most topics one v2 connection may hold (1 to 256); more is a 400 too_many_topics.",
    },
    Setting {
        name: "PUBLIC_API_PRIVILEGED_ROLES",
        default: "",
        help: "Comma-separated roles: a token whose roles claim holds one of them may read any topic of its issuer (v2).",
    },
    Setting {
        name: "PUBLIC_API_TICKET_LIFETIME",
        default: "60",
        help: "Seconds a ticket from POST /v2/tickets stays redeemable (1 to 3600; never past its token's expiry). Tickets are single-use.",
    },
    Setting {
        name: "WS_MAX_MESSAGE_SIZE",
        default: "65536",
        help: "Largest message a WebSocket client may send, in bytes (125 to 16 MiB); a larger one closes the connection with 1009.",
    },
    Setting {
        name: "WS_PING_INTERVAL",
        default: "25",
        help: "Seconds of silence after which Herald pings a WebSocket (1 to 3600); a client silent for this plus 10 s is closed with 4512.",
    },
    Setting {
        name: "WS_MAX_COMMANDS_PER_SECOND",
        default: "100",
        help: "Commands one WebSocket may send in a second (0: no limit); more close it with 4429.",
    },
    Setting {
        name: "PUBLIC_API_TOKEN_COOKIE",
        default: "herald_token",
        help: "Name of the cookie a browser's token may come in, for v2 routes (after Authorization and access_token).",
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
        help: "Neurow's JSON: {\"service_name\": audience, \"clients\": {issuer: secret, [secrets], or {\"secrets\", \"hmac_algorithms\", \"keys\": [{\"pem\", \"kid\", \"algorithms\"}], \"jwks_file\", \"jwks_url\"}}}. Unset: the development issuers test_issuer1 and test_issuer2, with a loud warning.",
    },
    Setting {
        name: "DATABASE_URL",
        default: "(SQLite in DATA_DIR)",
        help: "The store of collections: postgres://user@host:port/db (what a cluster shares), or sqlite:path. Unset: SQLite in DATA_DIR on a single node; no store on a cluster node (REDIS_URL).",
    },
    Setting {
        name: "DATA_DIR",
        default: "./herald-data",
        help: "Directory of the embedded SQLite store (herald.db), created at start.",
    },
    Setting {
        name: "SQLITE_SYNCHRONOUS",
        default: "full",
        help: "full: an acknowledged write survives power loss; normal: it survives a process crash, at 3-5x the single-commit rate.",
    },
    Setting {
        name: "ACCOUNTS_SIGNUP",
        default: "closed",
        help: "open: anyone may create an account (POST /v2/users on the public API); closed: only a backend, on the internal API.",
    },
    Setting {
        name: "ACCOUNTS_ISSUER",
        default: "(the first issuer with a secret)",
        help: "The JWT_CONFIG issuer whose first secret signs login tokens (POST /v2/login), and whose namespace accounts and their collections live in.",
    },
    Setting {
        name: "ACCOUNTS_TOKEN_LIFETIME",
        default: "(900, at most PUBLIC_API_JWT_MAX_LIFETIME)",
        help: "Seconds a login token lasts; longer than PUBLIC_API_JWT_MAX_LIFETIME refuses to start.",
    },
    Setting {
        name: "JWKS_REFRESH_INTERVAL",
        default: "300",
        help: "Seconds between fetches of an issuer's jwks_url (1 to 86400); the last good key set serves while the provider is down.",
    },
    Setting {
        name: "JWKS_MIN_REFETCH_INTERVAL",
        default: "10",
        help: "Least seconds between two fetches of one jwks_url (1 to 3600): a token with an unknown kid asks for a fetch at most this often, and a set never fetched is retried this often.",
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
    use super::*;

    /// The README's configuration table and docs/configuration.md are written by hand: every
    /// setting must be in both, with its default.
    #[test]
    fn every_setting_is_documented() {
        let readme = include_str!("../../../../README.md");
        let guide = include_str!("../../../../docs/configuration.md");
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

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = settings_help();
        for s in SETTINGS {
            assert!(help.contains(s.name));
        }
        assert!(help.contains("[default: 4000]"));
    }
}

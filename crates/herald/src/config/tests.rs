//! Tests of the configuration as a whole (defaults, the order errors are reported in, what is
//! ignored), and the [`parse`] helper every area's tests read a configuration through.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

/// Parses `vars` as the whole environment.
pub(super) fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
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
fn ignored_neurow_cluster_variables_are_listed() {
    let c = parse(&[("K8S_SELECTOR", "app=neurow")]).unwrap();
    assert_eq!(c.ignored_variables, ["K8S_SELECTOR"]);
}

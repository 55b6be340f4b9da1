//! Logging setup: `LOG_LEVEL` and `LOG_FORMAT` (TEXT lines or ECS JSON lines), to standard output.
//!
//! Never log a bearer token, an `Authorization` header or a secret: no code path hands them to a
//! log macro ([`super::request_log`] keeps only the headers that are logged), and the
//! configuration masks secrets in `Debug`. The black-box tests in `tests/logs.rs` drive every path
//! that handles a token, in both formats at `debug`, and check no line carries one.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::ecs::EcsLayer;
use crate::config::{LogConfig, LogFormat, LogLevel};

/// Installs the global subscriber. Call once, at start; a second call changes nothing.
pub fn init(config: LogConfig) {
    let level = match config.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error => "error",
    };
    // Dependencies stay at warn so `debug` shows Herald's own story.
    let filter = EnvFilter::new(format!("warn,herald={level}"));
    let (text, ecs) = match config.format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::io::stdout),
            ),
            None,
        ),
        LogFormat::Ecs => (None, Some(EcsLayer::new(std::io::stdout))),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(ecs)
        .try_init();
}

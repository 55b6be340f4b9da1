//! Logging setup: `LOG_LEVEL` and `LOG_FORMAT` (TEXT or ECS JSON lines), to standard output.
//!
//! Never log a bearer token, an `Authorization` header or a secret: no code path hands them to a
//! log macro, and the configuration masks secrets in `Debug`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat, LogLevel};

/// Installs the global subscriber. Call once, at start.
pub fn init(config: LogConfig) {
    let level = match config.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error => "error",
    };
    // Dependencies stay at warn so `debug` shows Herald's own story.
    let filter = EnvFilter::new(format!("warn,herald={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match config.format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Ecs => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

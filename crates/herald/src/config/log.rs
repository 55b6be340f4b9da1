//! Logging: `LOG_LEVEL` and `LOG_FORMAT`, with the spellings Neurow's operators already use.

use super::reader::Reader;

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

/// Reads `LOG_LEVEL` and `LOG_FORMAT`.
pub(super) fn read(r: &mut Reader<'_>) -> LogConfig {
    LogConfig {
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

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
}

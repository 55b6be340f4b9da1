//! `LOG_FORMAT=ECS`: one JSON object per line with Elastic Common Schema field names (spec §6).
//!
//! Why our own layer: tracing-subscriber's JSON output names its fields `timestamp`, `level` and
//! `target`, which neither Elastic's ECS templates nor dashboards built on Neurow's logs read.
//!
//! Every key is written flat, with dots in its name (`"log.level"`, `"trace.id"`), as Elastic's
//! ecs-logging libraries do: Elasticsearch maps `"trace.id"` and `{"trace":{"id"}}` to the same
//! field, Filebeat's `ndjson` parser expands them with `expand_keys`, and Loki's `json` stage turns
//! both into `trace_id`. The keys come in a fixed order, the ecs-logging one first: `@timestamp`,
//! `log.level`, `message`, `ecs.version`, `log.logger`, `category`, `service.name`,
//! `service.version`, then the event's own fields:
//! - a field whose name has a dot is an ECS name by construction (`error.code`, `client.ip`) and is
//!   written as it is; `url.path` is also written as `http.request.path`, Neurow's name for it;
//! - `category` is Neurow's top-level field: `app` unless the event says otherwise (`security`);
//! - `error` becomes `error.message`, since a plain `error` string would clash in Elasticsearch's
//!   mapping with the `error.code` object;
//! - any other name (`issuer`, `addr`) goes under `labels.`, Elastic's place for custom key-value
//!   pairs, so no future ECS field can clash with it.
//!
//! Levels are Neurow's (Elixir's) names, the words `LOG_LEVEL` takes: `debug`, `info`, `warning`,
//! `error`.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The ECS version the field names follow (as Neurow's formatter).
pub const ECS_VERSION: &str = "8.11.0";

/// `service.name`.
pub const SERVICE_NAME: &str = "herald";

/// Writes every event it sees as one ECS JSON line to its writer.
pub struct EcsLayer<W> {
    make_writer: W,
}

impl<W> EcsLayer<W> {
    /// A layer writing to `make_writer` (standard output in production, a buffer in tests).
    pub fn new(make_writer: W) -> Self {
        EcsLayer { make_writer }
    }
}

impl<S, W> Layer<S> for EcsLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let line = format_event(event, SystemTime::now());
        // One write per line, so lines of concurrent events never interleave. A failed write has
        // nowhere to be reported.
        let _ = self.make_writer.make_writer().write_all(line.as_bytes());
    }
}

/// The whole line of `event`, newline included.
fn format_event(event: &Event<'_>, now: SystemTime) -> String {
    // Events forwarded from the `log` crate carry their real target in fields; read it from there.
    let normalized = event.normalized_metadata();
    let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
    let mut fields = Fields {
        skip_log_fields: event.is_log(),
        ..Fields::default()
    };
    event.record(&mut fields);

    let mut line = String::with_capacity(256 + fields.rest.len());
    line.push_str("{\"@timestamp\":\"");
    push_timestamp(&mut line, now);
    line.push_str("\",\"log.level\":\"");
    line.push_str(level_name(*metadata.level()));
    line.push_str("\",\"message\":");
    push_json_str(&mut line, &fields.message);
    line.push_str(",\"ecs.version\":\"");
    line.push_str(ECS_VERSION);
    line.push_str("\",\"log.logger\":");
    push_json_str(&mut line, metadata.target());
    line.push_str(",\"category\":");
    push_json_str(&mut line, fields.category.as_deref().unwrap_or("app"));
    line.push_str(",\"service.name\":\"");
    line.push_str(SERVICE_NAME);
    line.push_str("\",\"service.version\":");
    push_json_str(&mut line, env!("CARGO_PKG_VERSION"));
    line.push_str(&fields.rest);
    line.push_str("}\n");
    line
}

/// Neurow's level names.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Collects an event's fields: the message and category apart, the others already rendered as
/// `,"key":value` in `rest`.
#[derive(Default)]
struct Fields {
    message: String,
    category: Option<String>,
    rest: String,
    skip_log_fields: bool,
}

impl Fields {
    /// Starts the entry of `field` in `rest` (`,"key":`), or returns false when it is not one.
    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.skip_log_fields && name.starts_with("log.") {
            return false;
        }
        self.rest.push(',');
        if name == "error" {
            push_json_str(&mut self.rest, "error.message");
        } else if name.contains('.') {
            push_json_str(&mut self.rest, name);
        } else {
            push_json_str(&mut self.rest, &format!("labels.{name}"));
        }
        self.rest.push(':');
        true
    }

    /// Records a string value, handling the fields the line places itself.
    fn string(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => value.clone_into(&mut self.message),
            "category" => self.category = Some(value.to_owned()),
            _ => {
                if self.key(field) {
                    push_json_str(&mut self.rest, value);
                    if field.name() == "url.path" {
                        self.rest.push_str(",\"http.request.path\":");
                        push_json_str(&mut self.rest, value);
                    }
                }
            }
        }
    }

    /// Records a value that is already valid JSON (a number or a boolean).
    fn raw(&mut self, field: &Field, json: fmt::Arguments<'_>) {
        match field.name() {
            "message" | "category" => self.string(field, &json.to_string()),
            _ => {
                if self.key(field) {
                    let _ = self.rest.write_fmt(json);
                }
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            // JSON has no NaN or infinity.
            self.string(field, &value.to_string());
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(e) = source {
            let _ = write!(text, ": {e}");
            source = e.source();
        }
        self.string(field, &text);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, &format!("{value:?}"));
    }
}

/// Appends `s` as a JSON string, quotes included. serde_json does the escaping: quotes,
/// backslashes, newlines and every other control character.
fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serialising a `str` cannot fail; stay valid JSON regardless.
        Err(_) => out.push_str("\"\""),
    }
}

/// Appends `time` in RFC 3339, UTC, with microseconds: `2026-11-23T10:00:00.123456Z`. A time
/// before 1970 (a broken clock) is written as the epoch.
fn push_timestamp(out: &mut String, time: SystemTime) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, second_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_micros()
    );
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The lines `log` writes through the layer.
    fn lines_of(log: impl FnOnce()) -> Vec<String> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(EcsLayer::new(captured.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap().lines().map(str::to_owned).collect()
    }

    fn one_json_line(log: impl FnOnce()) -> Value {
        let lines = lines_of(log);
        assert_eq!(lines.len(), 1, "{lines:?}");
        serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]))
    }

    #[test]
    fn a_line_has_the_fixed_fields_first_in_ecs_logging_order() {
        let lines = lines_of(|| tracing::info!("hello"));
        let line = &lines[0];
        assert!(line.starts_with("{\"@timestamp\":\""), "{line}");
        let order: Vec<usize> = [
            "\"log.level\":\"info\"",
            "\"message\":\"hello\"",
            "\"ecs.version\":\"8.11.0\"",
            "\"log.logger\":\"herald::observe::ecs::tests\"",
            "\"category\":\"app\"",
            "\"service.name\":\"herald\"",
            "\"service.version\":",
        ]
        .iter()
        .map(|key| line.find(key).unwrap_or_else(|| panic!("{key} missing from {line}")))
        .collect();
        assert!(order.is_sorted(), "{line}");
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["service.version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn newlines_quotes_and_control_characters_in_messages_stay_on_one_line() {
        let lines = lines_of(|| tracing::warn!(detail = "a\"b\\c\u{1}", "two\nlines\r\tand \"quotes\""));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(r#""message":"two\nlines\r\tand \"quotes\"""#),
            "{}",
            lines[0]
        );
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["message"], "two\nlines\r\tand \"quotes\"");
        assert_eq!(v["labels.detail"], "a\"b\\c\u{1}");
        assert_eq!(v["log.level"], "warning");
    }

    #[test]
    fn event_fields_are_flattened_with_dotted_names() {
        let v = one_json_line(|| {
            tracing::error!(
                category = "security",
                error.code = "jwt_authentication.token_expired",
                url.path = "/v1/subscribe",
                http.response.status_code = 403u64,
                ratio = 0.5,
                ok = true,
                delta = -3i64,
                issuer = %"test_issuer1",
                "refused"
            )
        });
        assert_eq!(v["category"], "security");
        assert_eq!(v["error.code"], "jwt_authentication.token_expired");
        assert_eq!(v["url.path"], "/v1/subscribe");
        assert_eq!(v["http.request.path"], "/v1/subscribe");
        assert_eq!(v["http.response.status_code"], 403);
        assert_eq!(v["labels.ratio"], 0.5);
        assert_eq!(v["labels.ok"], true);
        assert_eq!(v["labels.delta"], -3);
        assert_eq!(v["labels.issuer"], "test_issuer1");
        assert_eq!(v["log.level"], "error");
        assert_eq!(v["message"], "refused");
    }

    #[test]
    fn an_error_field_becomes_error_message_and_keeps_its_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        let v = one_json_line(|| tracing::error!(error = &e as &(dyn std::error::Error + 'static), "failed"));
        assert_eq!(v["error.message"], "outer: inner");
        let v = one_json_line(|| tracing::error!(error = %"plain", "failed"));
        assert_eq!(v["error.message"], "plain");
        assert!(v.get("error").is_none());
    }

    #[test]
    fn non_finite_numbers_are_strings() {
        let v = one_json_line(|| tracing::info!(x = f64::NAN, "n"));
        assert_eq!(v["labels.x"], "NaN");
    }

    fn timestamp(time: SystemTime) -> String {
        let mut s = String::new();
        push_timestamp(&mut s, time);
        s
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp(at(1_795_435_200, 123_456)), "2026-11-23T12:00:00.123456Z");
        // Leap days, the end of a leap year and a century that is not a leap year.
        assert_eq!(timestamp(at(951_782_400, 0)), "2000-02-29T00:00:00.000000Z");
        assert_eq!(timestamp(at(1_735_689_599, 999_999)), "2024-12-31T23:59:59.999999Z");
        assert_eq!(timestamp(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000000Z");
        // Nanoseconds are truncated, not rounded up into the next second.
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::new(59, 999_999_999)),
            "1970-01-01T00:00:59.999999Z"
        );
        assert_eq!(
            timestamp(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn the_date_conversion_agrees_with_a_day_by_day_count() {
        let (mut year, mut month, mut day) = (1970u64, 1u64, 1u64);
        for days in 0..200_000u64 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let month_len = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > month_len {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }
}

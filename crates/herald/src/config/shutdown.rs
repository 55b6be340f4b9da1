//! Shutdown timing: how long a node waits for its streams to end after SIGTERM
//! (`SHUTDOWN_DRAIN_TIMEOUT`) and over how much of that it spreads their `reconnect`
//! (`SHUTDOWN_RECONNECT_WINDOW`). The two are read together because the window must fit in the
//! drain.

use std::time::Duration;

use super::reader::Reader;

/// The longest default `SHUTDOWN_RECONNECT_WINDOW`, in milliseconds.
const DEFAULT_RECONNECT_WINDOW_MS: u64 = 5_000;

/// The two shutdown durations, named so they cannot be swapped.
pub(super) struct ShutdownTiming {
    /// How long shutdown waits for streams to end, from the signal.
    pub(super) drain_timeout: Duration,
    /// How long shutdown takes to tell every stream to reconnect.
    pub(super) reconnect_window: Duration,
}

/// Reads `SHUTDOWN_DRAIN_TIMEOUT`, then `SHUTDOWN_RECONNECT_WINDOW`, which must be shorter
/// unless both are zero; a drain timeout that is itself invalid is not compared against.
pub(super) fn read(r: &mut Reader<'_>) -> ShutdownTiming {
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
    ShutdownTiming {
        drain_timeout: Duration::from_millis(drain_ms),
        reconnect_window: Duration::from_millis(window_ms),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

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
}

//! Panics counted in `http_request_exception_count` and logged, so a bug in a request path shows
//! on a dashboard instead of only as a dropped connection.
//!
//! A panic hook rather than a `catch_unwind` around every connection: it costs nothing until a
//! panic happens and adds nothing to the task each idle subscription keeps. The interface label
//! comes from where the panic happened: Herald's public or internal API code, else `unknown`
//! (a dependency, a timer).

use std::sync::Arc;

use super::metrics::{Interface, Metrics};

/// Installs the hook, keeping the previous one (which prints the message and backtrace).
pub fn count_panics(metrics: Arc<Metrics>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map_or("", |l| l.file());
        metrics.exception(interface_of(file));
        tracing::error!(panic = %info, "a handler panicked; this is a bug in Herald, please report it");
        previous(info);
    }));
}

fn interface_of(file: &str) -> Option<Interface> {
    let file = file.replace('\\', "/");
    if file.contains("src/api/public/") || file.contains("src/transport/") {
        Some(Interface::Public)
    } else if file.contains("src/api/internal/") {
        Some(Interface::Internal)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_is_read_from_the_panics_place() {
        assert_eq!(
            interface_of("crates/herald/src/api/public/h2.rs"),
            Some(Interface::Public)
        );
        assert_eq!(
            interface_of("crates/herald/src/transport/sse/stream.rs"),
            Some(Interface::Public)
        );
        assert_eq!(
            interface_of("crates/herald/src/api/internal/publish_route.rs"),
            Some(Interface::Internal)
        );
        assert_eq!(
            interface_of("/root/.cargo/registry/src/hyper-1.12.0/src/proto/h1/role.rs"),
            None
        );
    }
}

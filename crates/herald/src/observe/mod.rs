//! Observability: metrics and logging.

pub mod ecs;
pub mod logging;
pub mod metrics;
pub mod panics;
pub mod process;
pub mod request_log;

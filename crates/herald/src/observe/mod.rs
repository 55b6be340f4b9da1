//! Observability: metrics and logging.

pub mod logging;
pub mod metrics;
pub mod process;

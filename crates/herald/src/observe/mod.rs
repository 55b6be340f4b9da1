//! Observability: metrics and logging.

pub mod ecs;
pub mod logging;
pub mod metrics;
pub mod process;

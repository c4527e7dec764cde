//! Log setup: text or JSON lines on stdout, filtered by `[log] level` (or `LLMGATE_LOG`).

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(cfg: &LogConfig) {
    crate::log_writer::set_interval(cfg.access_log_flush.0);
    let filter =
        EnvFilter::try_from_env("LLMGATE_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

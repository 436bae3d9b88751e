//! Tracing setup: one JSON object per line on standard error, level from `KEEP_LOG`
//! (default `info`; e.g. `KEEP_LOG=debug` or `KEEP_LOG=keep_tls=debug,info`).

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}

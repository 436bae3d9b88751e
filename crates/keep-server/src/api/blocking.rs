//! Storage for handlers: the unsealed store, and work that may block, off the async workers.

use std::sync::Arc;

use crate::api::error::ApiError;
use crate::state::AppState;

/// The unsealed store, or the 503 Vault answers while sealed.
pub fn store(state: &AppState) -> Result<Arc<dyn keep_store::Store>, ApiError> {
    state.store().ok_or_else(ApiError::sealed)
}

/// Runs blocking storage work (writes, which fsync) off the async runtime. Reads run in place:
/// SQLite in WAL mode never waits for a writer and the barrier decrypts in microseconds, so
/// handing a read to the blocking pool and back cost more than the read itself.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

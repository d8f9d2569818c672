//! What is remembered between runs: the store itself (plugin storage, or files for the
//! command line), the crawl's sync state and its snapshot codec.

pub mod files;
pub mod snapshot;
pub mod sync_state;

use std::future::Future;

/// Storage for sync state: plugin storage in the plugin, files for the command line.
pub trait StateStore: Send + Sync {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StateError>> + Send;
    fn set(&self, key: &str, value: &[u8]) -> impl Future<Output = Result<(), StateError>> + Send;
    fn del(&self, key: &str) -> impl Future<Output = Result<(), StateError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sync state storage failed: {0}")]
pub struct StateError(pub String);

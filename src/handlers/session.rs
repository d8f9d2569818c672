//! A crawl's daemon session: plugin storage as its state store, and the session's stream
//! for its progress and final message.

use crate::crawl::deliver::progress_message;
use crate::crawl::{result_budget, CrawlError, CrawlSink};
use crate::store::{StateError, StateStore};
use dify_plugin::protocol::stdio::DEFAULT_LINE_CAP;
use dify_plugin::protocol::storage::Storage;
use dify_plugin::protocol::Session;

/// Plugin storage for one crawl. A silent daemon must not hold the run past the daemon's own
/// limit: every call ends by the run's deadline (`PLUGIN_MAX_EXECUTION_TIMEOUT`, 600 s,
/// less 30 s).
pub struct SessionStore {
    pub storage: Storage,
    pub deadline: tokio::time::Instant,
}

impl SessionStore {
    async fn within<T, E: std::fmt::Display>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout_at(self.deadline, call).await {
            Ok(result) => result.map_err(|e| StateError(e.to_string())),
            Err(_) => Err(StateError(
                "the daemon did not answer within the run's time limit".into(),
            )),
        }
    }
}

impl StateStore for SessionStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.within(self.storage.get(key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.within(self.storage.set(key, value)).await
    }

    async fn del(&self, key: &str) -> Result<(), StateError> {
        self.within(self.storage.del(key)).await
    }
}

pub struct SessionSink {
    pub session: Session,
    /// `GIT_DATASOURCE_MAX_RESULT_BYTES`, when set.
    pub max_result_bytes: Option<usize>,
}

impl CrawlSink for SessionSink {
    async fn progress(&self, total: usize, completed: usize) -> Result<(), CrawlError> {
        self.session
            .stream(progress_message(total, completed))
            .await
            .map_err(|e| CrawlError::Output(e.to_string()))
    }

    fn data_budget(&self) -> usize {
        // TCP has no line cap; keep to the stdio default so a debug session behaves alike.
        let max_line = self.session.max_line_len().unwrap_or(DEFAULT_LINE_CAP - 1);
        result_budget(
            max_line,
            self.session.stream_line_len(0),
            self.max_result_bytes,
        )
    }

    async fn finish(&self, data: Vec<u8>) -> Result<(), CrawlError> {
        self.session
            .stream_serialized(data)
            .await
            .map_err(|e| CrawlError::Output(e.to_string()))
    }
}

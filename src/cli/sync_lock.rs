//! One sync of a knowledge base at a time on this machine.

use std::time::{Duration, Instant};

use crate::crawl::CrawlError;
use crate::dify::knowledge::KnowledgeApi;
use crate::store::files::FileStore;
use crate::store::StateError;

/// One sync of a knowledge base at a time on this machine: a lock file per (API, knowledge
/// base) under the state directory, naming its holder; a second sync waits for the first, up
/// to `wait`, then gives up saying who holds it.
pub(super) async fn lock(
    store: &FileStore,
    api: &KnowledgeApi,
    dataset: &str,
    wait: Duration,
) -> Result<std::fs::File, CrawlError> {
    use sha2::Digest;
    let dir = store.dir().join("locks");
    let io = |e: std::io::Error| CrawlError::State(StateError(format!("{}: {e}", dir.display())));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let name = hex::encode(&sha2::Sha256::digest(format!("{}|{dataset}", api.shown_base()))[..8]);
    let path = dir.join(format!("sync-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let holder = || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        match text.trim() {
            "" => "a process that did not say who it is".to_string(),
            text => text.chars().take(100).collect(),
        }
    };
    let until = Instant::now() + wait;
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                let since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let mut held = &file;
                file.set_len(0).map_err(io)?;
                write!(held, "pid {} since {since} (unix time)", std::process::id()).map_err(io)?;
                return Ok(file);
            }
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < until => {
                if !said {
                    said = true;
                    eprintln!(
                        "another sync of this knowledge base is running on this machine ({}, {}); \
                         waiting up to {wait:?} for it to finish",
                        holder(),
                        path.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(250).min(wait)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(CrawlError::State(StateError(format!(
                    "another sync of this knowledge base ({}) still holds {} after {wait:?}; run \
                     again when it has finished, or wait longer with --lock-wait",
                    holder(),
                    path.display()
                ))))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}

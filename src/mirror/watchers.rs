//! The background watchers of a plugin process: one per (API, knowledge base,
//! configuration, key), oldest first. A new crawl of the same configuration stops the
//! previous one, whose view of the branch is out of date. Bounded in number and in what
//! their watches hold (the oldest gives way, and the next crawl of its configuration
//! finishes its work), and each ends by its deadline.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::watch::Watch;
use super::WatchSettings;

/// The running watchers, one per (API, knowledge base, configuration, key), oldest first: a
/// new crawl of the same configuration stops the previous one, whose view of the branch is
/// out of date. Bounded in number and in what their watches hold (the oldest gives way, and
/// the next crawl of its configuration finishes its work), and each ends by its deadline.
pub struct Watchers {
    running: Arc<Mutex<Running>>,
    limits: WatcherLimits,
}

#[derive(Default)]
struct Running {
    tasks: Vec<Task>,
    next: u64,
}

struct Task {
    key: String,
    id: u64,
    bytes: usize,
    handle: tokio::task::AbortHandle,
}

/// How many watchers may run at once, how much their watches may hold, and how long one runs.
#[derive(Debug, Clone, Copy)]
pub struct WatcherLimits {
    pub count: usize,
    pub bytes: usize,
    pub deadline: Duration,
}

impl Watchers {
    pub fn new(limits: WatcherLimits) -> Self {
        Watchers {
            running: Arc::default(),
            limits,
        }
    }

    /// Whether a watcher of `key` runs.
    pub fn is_running(&self, key: &str) -> bool {
        let running = self.running.lock().expect("watchers");
        running.tasks.iter().any(|task| task.key == key)
    }

    pub fn stop(&self, key: &str) {
        self.running.lock().expect("watchers").tasks.retain(|task| {
            let same = task.key == key;
            if same {
                task.handle.abort();
            }
            !same
        });
    }

    /// Runs `watch` in the background, in place of its configuration's previous watcher.
    pub fn start(&self, watch: Watch, settings: WatchSettings) {
        let (key, bytes) = (watch.key(), watch.bytes());
        self.spawn(key, bytes, async move {
            watch.run(settings).await;
        });
    }

    fn spawn(&self, key: String, bytes: usize, task: impl Future<Output = ()> + Send + 'static) {
        let limits = self.limits;
        self.stop(&key);
        if bytes > limits.bytes {
            tracing::warn!(
                "mirror: not watching this import: its watch would hold about {} MB, more than \
                 the {} MB all watchers may (GIT_DATASOURCE_MIRROR_WATCHERS_MB); the next crawl \
                 cleans up",
                bytes >> 20,
                limits.bytes >> 20
            );
            return;
        }
        let mut running = self.running.lock().expect("watchers");
        while !running.tasks.is_empty()
            && (running.tasks.len() >= limits.count
                || running.tasks.iter().map(|t| t.bytes).sum::<usize>() + bytes > limits.bytes)
        {
            let oldest = running.tasks.remove(0);
            oldest.handle.abort();
            tracing::info!(
                "mirror: the oldest watcher gives way to a newer one (at most {} at once, {} MB \
                 in all); the next crawl of its configuration finishes its work",
                limits.count,
                limits.bytes >> 20
            );
        }
        running.next += 1;
        let id = running.next;
        let registry = self.running.clone();
        // Spawned under the lock: the task's own removal waits until it is listed.
        let handle = tokio::spawn(async move {
            if tokio::time::timeout(limits.deadline, task).await.is_err() {
                tracing::info!(
                    "mirror: a watcher reached its deadline ({:?}); the next crawl finishes its \
                     work",
                    limits.deadline
                );
            }
            registry
                .lock()
                .expect("watchers")
                .tasks
                .retain(|t| t.id != id);
        })
        .abort_handle();
        running.tasks.push(Task {
            key,
            id,
            bytes,
            handle,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WatcherLimits = WatcherLimits {
        count: 3,
        bytes: 1000,
        deadline: Duration::from_secs(3600),
    };

    impl Watchers {
        fn keys(&self) -> Vec<String> {
            let running = self.running.lock().unwrap();
            running.tasks.iter().map(|t| t.key.clone()).collect()
        }
    }

    fn forever() -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    #[tokio::test]
    async fn the_oldest_gives_way_in_number_and_in_memory() {
        let watchers = Watchers::new(LIMITS);
        for key in ["a", "b", "c", "d"] {
            watchers.spawn(key.into(), 100, forever());
        }
        assert_eq!(watchers.keys(), ["b", "c", "d"]);
        // A large one pushes out as many as its memory needs.
        watchers.spawn("big".into(), 850, forever());
        assert_eq!(watchers.keys(), ["d", "big"]);
        // One larger than all may hold is not started, and stops nothing but its own.
        watchers.spawn("d".into(), 5000, forever());
        assert_eq!(watchers.keys(), ["big"]);
    }

    #[tokio::test]
    async fn a_watcher_ends_by_its_deadline_and_leaves_the_list_when_done() {
        let watchers = Watchers::new(WatcherLimits {
            deadline: Duration::from_millis(50),
            ..LIMITS
        });
        watchers.spawn("stuck".into(), 10, forever());
        watchers.spawn("quick".into(), 10, async {});
        assert_eq!(watchers.keys().len(), 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(watchers.keys().is_empty(), "{:?}", watchers.keys());
    }

    #[tokio::test]
    async fn a_new_crawl_of_a_configuration_replaces_its_watcher() {
        let watchers = Watchers::new(LIMITS);
        watchers.spawn("a".into(), 10, forever());
        watchers.spawn("b".into(), 10, forever());
        watchers.spawn("a".into(), 10, forever());
        assert_eq!(watchers.keys(), ["b", "a"]);
        watchers.stop("b");
        assert_eq!(watchers.keys(), ["a"]);
    }
}

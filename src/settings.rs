//! Every setting the datasource takes from its environment, read once when the process
//! starts and handed down: `GIT_DATASOURCE_*`, and the daemon's `PLUGIN_MAX_EXECUTION_TIMEOUT`
//! and line cap. No other module of the library reads the environment (the Git layer's
//! `GIT_DATASOURCE_*` variables are read by `git_remote`'s own settings, [`crate::GIT_ENV`]).

use std::time::Duration;

use crate::crawl::CrawlSettings;
use crate::mirror::watchers::WatcherLimits;
use crate::mirror::WatchSettings;
use dify_plugin::protocol::stdio;

/// The default time budget of one crawl, well under the daemon's 600 s.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(420);

#[derive(Debug, Clone)]
pub struct Settings {
    /// `GIT_DATASOURCE_MAX_FILE_BYTES` (5,000,000) and `GIT_DATASOURCE_TIME_BUDGET_SECS` (420).
    pub crawl: CrawlSettings,
    /// `GIT_DATASOURCE_MAX_RESULT_BYTES`: the final message's data at most (never above the
    /// line); unset, the longest line less a margin.
    pub max_result_bytes: Option<usize>,
    /// `GIT_DATASOURCE_MIRROR_POLL_SECS` (15) and `GIT_DATASOURCE_MIRROR_WAIT_SECS` (1800).
    pub watch: WatchSettings,
    /// `GIT_DATASOURCE_MIRROR_WATCHERS` (16 at once) and `GIT_DATASOURCE_MIRROR_WATCHERS_MB`
    /// (128 for all their watches); each watcher ends four waits after it starts.
    pub watchers: WatcherLimits,
    /// `GIT_DATASOURCE_DIFY_RETRY_MS`: the Knowledge API's first backoff (500 ms, doubling).
    pub dify_retry: Duration,
    /// How long plugin storage may take in one run: `PLUGIN_MAX_EXECUTION_TIMEOUT` (600 s)
    /// less 30 s.
    pub storage_time_limit: Duration,
    /// The daemon's stdout line cap (`PLUGIN_STDIO_MAX_BUFFER_SIZE`, …), which the command
    /// line's result budget follows too.
    pub line_cap: usize,
}

impl Settings {
    pub fn from_env() -> Settings {
        Settings::from_vars(|name| std::env::var(name).ok())
    }

    /// The settings `var` gives (a variable's value by name); a value that does not parse
    /// counts as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let number = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok());
        let watch = WatchSettings {
            poll: Duration::from_secs(number("GIT_DATASOURCE_MIRROR_POLL_SECS").unwrap_or(15))
                .max(Duration::from_secs(1)),
            max_wait: Duration::from_secs(
                number("GIT_DATASOURCE_MIRROR_WAIT_SECS").unwrap_or(30 * 60),
            ),
        };
        let execution = number("PLUGIN_MAX_EXECUTION_TIMEOUT").unwrap_or(600);
        Settings {
            crawl: CrawlSettings {
                max_file_bytes: number("GIT_DATASOURCE_MAX_FILE_BYTES")
                    .unwrap_or(git_remote::blob::DEFAULT_MAX_FILE_BYTES),
                time_budget: number("GIT_DATASOURCE_TIME_BUDGET_SECS")
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_TIME_BUDGET),
            },
            max_result_bytes: number("GIT_DATASOURCE_MAX_RESULT_BYTES").map(|b| b as usize),
            watchers: WatcherLimits {
                count: number("GIT_DATASOURCE_MIRROR_WATCHERS")
                    .unwrap_or(16)
                    .max(1) as usize,
                bytes: (number("GIT_DATASOURCE_MIRROR_WATCHERS_MB").unwrap_or(128) as usize)
                    .saturating_mul(1 << 20),
                deadline: watch.max_wait * 4,
            },
            watch,
            dify_retry: Duration::from_millis(
                number("GIT_DATASOURCE_DIFY_RETRY_MS").unwrap_or(500),
            ),
            storage_time_limit: Duration::from_secs(execution.saturating_sub(30).max(5)),
            line_cap: stdio::line_cap_from(&var),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let defaults = Settings::from_vars(|_| None);
        assert_eq!(defaults.crawl.time_budget, DEFAULT_TIME_BUDGET);
        assert_eq!(defaults.watch.poll, Duration::from_secs(15));
        assert_eq!(defaults.watchers.deadline, Duration::from_secs(4 * 1800));
        assert_eq!(defaults.storage_time_limit, Duration::from_secs(570));
        assert_eq!(defaults.line_cap, stdio::DEFAULT_LINE_CAP);
        assert_eq!(defaults.max_result_bytes, None);

        let set = Settings::from_vars(|name| {
            match name {
                "GIT_DATASOURCE_MIRROR_POLL_SECS" => Some("0"),
                "GIT_DATASOURCE_MIRROR_WAIT_SECS" => Some("10"),
                "GIT_DATASOURCE_MIRROR_WATCHERS" => Some("0"),
                "GIT_DATASOURCE_MAX_RESULT_BYTES" => Some(" 1000 "),
                "GIT_DATASOURCE_TIME_BUDGET_SECS" => Some("not a number"),
                "PLUGIN_MAX_EXECUTION_TIMEOUT" => Some("20"),
                _ => None,
            }
            .map(String::from)
        });
        assert_eq!(set.watch.poll, Duration::from_secs(1), "at least a second");
        assert_eq!(set.watchers.deadline, Duration::from_secs(40));
        assert_eq!(set.watchers.count, 1, "at least one watcher");
        assert_eq!(set.max_result_bytes, Some(1000));
        assert_eq!(set.crawl.time_budget, DEFAULT_TIME_BUDGET);
        assert_eq!(set.storage_time_limit, Duration::from_secs(5));
    }
}

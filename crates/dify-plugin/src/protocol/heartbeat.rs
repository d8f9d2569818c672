//! The heartbeat task: one beat now, then one every interval, whatever the workers do.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::wire::heartbeat;
use super::writer::{LineKind, Writer};

/// The SDK's `HEARTBEAT_INTERVAL`; the daemon allows 120 s (stdio) and 60 s (TCP) of silence.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Queues the first beat before returning, so it precedes anything else the caller writes.
pub fn spawn(writer: Writer, interval: Duration) -> JoinHandle<()> {
    writer.post(&heartbeat(), LineKind::Heartbeat);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            writer.post(&heartbeat(), LineKind::Heartbeat);
        }
    })
}

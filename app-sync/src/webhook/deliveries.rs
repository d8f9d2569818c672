//! The webhook deliveries an endpoint accepted, so a replayed one (the same delivery id) is
//! refused: a file of at most [`KEPT`] ids, the oldest dropped first, written atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many deliveries are remembered.
pub const KEPT: usize = 1000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Seen {
    /// (delivery id, unix time accepted), oldest first.
    deliveries: Vec<(String, u64)>,
}

/// The deliveries of one endpoint's target.
pub struct Deliveries {
    file: PathBuf,
}

impl Deliveries {
    pub fn in_dir(dir: &Path) -> Deliveries {
        Deliveries {
            file: dir.join("deliveries.json"),
        }
    }

    /// When `id` was accepted before, if it was.
    pub fn accepted_at(&self, id: &str) -> Option<u64> {
        self.read()
            .deliveries
            .into_iter()
            .find(|(seen, _)| seen == id)
            .map(|(_, at)| at)
    }

    /// Remembers `id` as accepted now.
    pub fn accept(&self, id: &str) -> std::io::Result<()> {
        let mut seen = self.read();
        seen.deliveries.retain(|(other, _)| other != id);
        seen.deliveries.push((id.to_string(), now()));
        let excess = seen.deliveries.len().saturating_sub(KEPT);
        seen.deliveries.drain(..excess);
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = self.file.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec(&seen).expect("serializes"))?;
        std::fs::rename(&partial, &self.file)
    }

    fn read(&self) -> Seen {
        std::fs::read(&self.file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

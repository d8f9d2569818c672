//! `git-datasource sync`: one command makes a pipeline knowledge base mirror a branch,
//! through Dify's knowledge-pipeline Service API (1.13.0 and later) — or, with `--config`,
//! many knowledge bases many branches, each entry of the file as one `sync` (see
//! [`super::sync_job`] for what one does).

use std::path::PathBuf;
use std::time::Duration;

use super::sync_config::SyncConfig;
use super::sync_job::{Bar, SyncJob, SyncOptions};
pub use super::sync_report::{describe, SyncReport, EXIT_HELD};
use super::{git_client, git_credentials, DifyArgs, RepoArgs};
use crate::crawl::CrawlError;
use crate::mirror::plan::DeleteGuard;
use crate::mirror::push::PushSettings;
use crate::settings::Settings;

/// Make a pipeline knowledge base mirror a branch: push what it lacks through the
/// pipeline API (Dify 1.13+), wait for indexing, delete stale documents.
#[derive(Debug, clap::Args)]
#[command(mut_arg("repo", |repo| repo.required(false).required_unless_present("config")))]
pub struct SyncCommand {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The knowledge base: its id, or its URL (…/datasets/<id>/documents).
    #[arg(long, value_name = "ID", required_unless_present = "config")]
    pub knowledge_base: Option<String>,
    /// Sync every entry of this file (repositories, branches, filters, credentials by
    /// environment-variable name, knowledge bases; see sync-config.schema.json) instead of one
    /// repository named here. Options given here apply to every entry.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["repo", "knowledge_base", "branch", "subdir", "extensions", "include", "exclude", "inputs", "start_node"]
    )]
    pub config: Option<PathBuf>,
    /// With --config: only the entries of these names (repeat, or separate with commas).
    #[arg(long, value_name = "NAME", value_delimiter = ',', requires = "config")]
    pub only: Vec<String>,
    /// With --config: entries synced at once. Pushes to one Dify stay two runs in flight
    /// between them, as for one sync.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "config")]
    pub jobs: usize,
    #[command(flatten)]
    pub dify: DifyArgs,
    /// A variable of the pipeline's Process form, as name=text or name:=JSON (a number,
    /// true/false). Repeat for each; the others take the pipeline's defaults.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// The pipeline's Git Repository node to start at; needed only when it has several.
    #[arg(long, value_name = "NODE_ID")]
    pub start_node: Option<String>,
    /// Print the plan (offer, delete, keep, with paths) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Hold back deletions of files gone from the branch when there are more than N
    /// (default: more than 20 and more than half of the repository's searchable documents).
    #[arg(long, value_name = "N")]
    pub max_delete: Option<usize>,
    /// Delete the documents of files gone from the branch however many there are.
    #[arg(long, conflicts_with = "max_delete")]
    pub allow_mass_delete: bool,
    /// Documents per pipeline run.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub batch_files: usize,
    /// Bytes per pipeline run (the documents as JSON).
    #[arg(long, default_value_t = 4_000_000, value_name = "BYTES")]
    pub batch_bytes: usize,
    /// Stop waiting when Dify has indexed nothing for this long.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub stall_secs: u64,
    /// Give up after waiting this long for another sync of the same knowledge base on this
    /// machine.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub lock_wait: u64,
    /// Write the Git metadata of every document again, not only of those that lack it
    /// (after a field was edited or renamed in Dify, say).
    #[arg(long)]
    pub rewrite_metadata: bool,
    /// How often indexing is checked, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub poll_ms: u64,
}

/// The guard `allow_mass_delete` and `max_delete` ask for (the first wins); None when neither
/// asks.
pub fn asked_guard(allow_mass_delete: bool, max_delete: Option<usize>) -> Option<DeleteGuard> {
    match (allow_mass_delete, max_delete) {
        (true, _) => Some(DeleteGuard::Off),
        (false, Some(most)) => Some(DeleteGuard::AtMost(most)),
        (false, None) => None,
    }
}

/// Parses `--input` values: `name=text` (a string) or `name:=JSON`.
pub fn parse_inputs(inputs: &[String]) -> Result<serde_json::Value, String> {
    let mut map = serde_json::Map::new();
    for input in inputs {
        let (name, value) = match (input.find(":="), input.find('=')) {
            (Some(at), Some(eq)) if at < eq => {
                let text = &input[at + 2..];
                let value = serde_json::from_str(text).map_err(|_| {
                    format!(
                        "--input {}:=…: the value is not JSON (a number, true, false, \"text\"); \
                         use name=value for text",
                        &input[..at]
                    )
                })?;
                (&input[..at], value)
            }
            (_, Some(eq)) => (&input[..eq], serde_json::Value::from(&input[eq + 1..])),
            _ => {
                return Err(format!(
                    "--input needs name=value (or name:=JSON); got {} characters without '='",
                    input.chars().count()
                ))
            }
        };
        let name = name.trim();
        if name.is_empty() {
            return Err("--input needs a variable name before '='".into());
        }
        map.insert(name.to_string(), value);
    }
    Ok(serde_json::Value::Object(map))
}

impl SyncCommand {
    /// Syncs the one repository the command names.
    pub async fn run(&self) -> Result<SyncReport, CrawlError> {
        let knowledge_base = self.knowledge_base.as_deref().unwrap_or_default();
        let params = self.repo.params(Some(knowledge_base))?;
        let dataset = params
            .knowledge_base_id
            .clone()
            .ok_or_else(|| CrawlError::Params(vec!["--knowledge-base is empty".into()]))?;
        let inputs = parse_inputs(&self.inputs).map_err(|e| CrawlError::Params(vec![e]))?;
        let job = SyncJob {
            params,
            dataset,
            api: self.dify.api("sync", &Settings::from_env())?,
            credentials: git_credentials()?,
            inputs,
            start_node: self.start_node.clone(),
            guard: self.guard().unwrap_or(DeleteGuard::Default),
        };
        let bar = Bar::single();
        let report = job
            .run(&git_client(), &self.repo.store(), &self.options(), &bar)
            .await;
        bar.finish();
        report
    }

    /// The file `--config` names, read and checked; problems name their line.
    pub fn config(&self) -> Result<Option<SyncConfig>, String> {
        self.config.as_deref().map(SyncConfig::read).transpose()
    }

    /// The deletion guard the options ask for, if they ask.
    pub fn guard(&self) -> Option<DeleteGuard> {
        asked_guard(self.allow_mass_delete, self.max_delete)
    }

    /// How every sync of this command runs.
    pub fn options(&self) -> SyncOptions {
        SyncOptions {
            dry_run: self.dry_run,
            rewrite_metadata: self.rewrite_metadata,
            lock_wait: Duration::from_secs(self.lock_wait),
            push: PushSettings {
                max_items: self.batch_files.max(1),
                max_bytes: self.batch_bytes,
                stall: Duration::from_secs(self.stall_secs),
                poll: Duration::from_millis(self.poll_ms.max(1)),
                ..PushSettings::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs() {
        let parsed = parse_inputs(&[
            "chunk_size:=1024".into(),
            "separator=\\n\\n".into(),
            "label=a=b".into(),
            "flag:=true".into(),
        ])
        .unwrap();
        assert_eq!(parsed["chunk_size"], 1024);
        assert_eq!(parsed["separator"], "\\n\\n");
        assert_eq!(parsed["label"], "a=b");
        assert_eq!(parsed["flag"], true);
        assert!(parse_inputs(&["novalue".into()]).is_err());
        assert!(parse_inputs(&["=x".into()]).is_err());
        let error = parse_inputs(&["n:=nope".into()]).unwrap_err();
        assert!(error.contains("--input n:="), "{error}");
    }
}

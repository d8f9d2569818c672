//! `git-datasource crawl`: the plugin's crawl from a terminal, with state in files, a
//! progress bar, and a summary (or the documents as JSON lines).

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use super::{git_client, git_credentials, DifyArgs, RepoArgs};
use crate::crawl::{
    result_budget, Crawl, CrawlError, CrawlSink, Crawled, MirrorReport, RunSummary,
};
use crate::mirror::plan::Deletion;
use crate::mirror::Mirror;
use crate::repository::shorten;
use crate::settings::Settings;

/// Crawl a repository from the terminal, exactly as the plugin does, with sync state in
/// files: the first run delivers every text file, later runs what changed.
#[derive(Debug, clap::Args)]
pub struct CrawlCommand {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print the delivered documents as JSON lines on stdout (the summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Mirror into this knowledge base (its id, or its URL): offer only what it lacks and
    /// delete its stale documents. Needs --dify-api-key.
    #[arg(long, value_name = "ID")]
    pub knowledge_base: Option<String>,
    #[command(flatten)]
    pub dify: DifyArgs,
}

impl CrawlCommand {
    pub async fn run(&self) -> Result<RunSummary, CrawlError> {
        let settings = Settings::from_env();
        let params = self.repo.params(self.knowledge_base.as_deref())?;
        let mirror = match &params.knowledge_base_id {
            Some(dataset) => Some(Mirror {
                api: self.dify.api("--knowledge-base", &settings)?,
                dataset: dataset.clone(),
                memory: None,
            }),
            None => None,
        };
        let credentials = git_credentials()?;
        let store = self.repo.store();
        let sink = TerminalSink::new(self.json, &settings);
        let crawl = Crawl {
            params: &params,
            credentials: &credentials,
            store: &store,
            sink: &sink,
            client: git_client(),
            settings: &settings.crawl,
            mirror: mirror.as_ref(),
        };
        let crawled = crawl.run().await;
        sink.bar.finish_and_clear();
        let Crawled { mut summary, watch } = crawled?;
        if let (Some(watch), Some(report)) = (watch, summary.mirror.as_mut()) {
            // No background watch here: delete what can go now; the next run does the rest.
            report.cleanup = watch.delete_planned(&store).await;
        }
        Ok(summary)
    }
}

/// The summary a person reads at the end of a run.
pub fn describe(summary: &RunSummary) -> String {
    let mut out = String::new();
    let short = &summary.commit[..summary.commit.len().min(12)];
    if summary.unchanged {
        out.push_str(&format!(
            "commit {short}: unchanged since the last run, nothing to deliver\n"
        ));
    } else {
        out.push_str(&format!(
            "commit {short}: delivered {} of {} changed files ({} bytes){}\n",
            summary.delivered,
            summary.total,
            summary.bytes,
            if summary.complete {
                ""
            } else {
                "; the rest continues on the next run"
            }
        ));
    }
    if !summary.skipped.is_empty() {
        let reasons: Vec<String> = summary
            .skipped
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        out.push_str(&format!("skipped: {}\n", reasons.join(", ")));
        for line in summary.skipped_lines().iter().take(20) {
            out.push_str(&format!("  {line}\n"));
        }
        if summary.skipped_files.len() > 20 {
            out.push_str(&format!(
                "  and {} more\n",
                summary.skipped_files.len() - 20
            ));
        }
    }
    if !summary.failed.is_empty() {
        out.push_str(&format!(
            "failed (retried next run): {}\n",
            summary.failed.join(", ")
        ));
    }
    if !summary.deleted.is_empty() {
        out.push_str(&format!(
            "deleted since the last run: {}\n",
            summary.deleted.join(", ")
        ));
    }
    if !summary.renamed.is_empty() {
        out.push_str(&format!(
            "renamed since the last run: {}\n",
            summary.renamed_lines().join(", ")
        ));
    }
    if let Some(mirror) = &summary.mirror {
        out.push_str(&describe_mirror(mirror));
    }
    out.push_str(&format!(
        "time: fetch {:.2?}, plan {:.2?}, read {:.2?}, record {:.2?}\n",
        summary.fetch_time, summary.plan_time, summary.read_time, summary.record_time
    ));
    out
}

fn describe_mirror(mirror: &MirrorReport) -> String {
    let plan = &mirror.plan;
    let report = &mirror.cleanup;
    let mut out = format!(
        "knowledge base: {} documents of this repository; kept {}, offered {}, deleted {}, \
         still indexing {} ({} API requests to list, {:.2?})\n",
        plan.ours,
        plan.kept,
        mirror.offered,
        report.deleted.len(),
        plan.indexing,
        mirror.requests,
        mirror.listing_time,
    );
    let paths = |list: &[Deletion]| {
        let paths: Vec<&str> = list.iter().map(|d| d.path.as_str()).collect();
        shorten(&paths)
    };
    if !report.deleted.is_empty() {
        out.push_str(&format!("deleted: {}\n", paths(&report.deleted)));
    }
    if !plan.held.is_empty() {
        out.push_str(&format!(
            "NOT deleted: {} documents of files gone from the branch, more than half of this \
             repository's searchable documents (a wrong branch or filter?); run with --full to allow it: {}\n",
            plan.held.len(),
            paths(&plan.held)
        ));
    }
    if !report.archived.is_empty() {
        out.push_str(&format!(
            "archived, left alone: {}\n",
            paths(&report.archived)
        ));
    }
    if !report.failed.is_empty() {
        let failed: Vec<Deletion> = report.failed.iter().map(|(d, _)| d.clone()).collect();
        out.push_str(&format!(
            "delete failed (retried next run): {}\n",
            paths(&failed)
        ));
    }
    out
}

/// Progress on a terminal bar (stderr), documents as JSON lines on stdout with `--json`.
pub struct TerminalSink {
    json: bool,
    bar: ProgressBar,
    /// The same budget as the plugin has on the daemon's stdio line.
    budget: usize,
}

impl TerminalSink {
    pub fn new(json: bool, settings: &Settings) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} files ({elapsed})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message("fetching");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        let budget = result_budget(settings.line_cap - 1, 0, settings.max_result_bytes);
        TerminalSink { json, bar, budget }
    }
}

impl CrawlSink for TerminalSink {
    async fn progress(&self, total: usize, completed: usize) -> Result<(), CrawlError> {
        if total > 0 {
            self.bar.set_message("reading");
            self.bar.set_length(total as u64);
            self.bar.set_position(completed as u64);
        }
        Ok(())
    }

    fn data_budget(&self) -> usize {
        self.budget
    }

    async fn finish(&self, data: Vec<u8>) -> Result<(), CrawlError> {
        if !self.json {
            return Ok(());
        }
        let message: serde_json::Value =
            serde_json::from_slice(&data).map_err(|e| CrawlError::Output(e.to_string()))?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for document in message["result"]["web_info_list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            writeln!(out, "{document}").map_err(|e| CrawlError::Output(e.to_string()))?;
        }
        out.flush().map_err(|e| CrawlError::Output(e.to_string()))
    }
}

//! `app_diff` and `app_history`: read-only looks at one app in both places.

use serde::Serialize;

use super::{normalized_diff, SyncContext, SyncError};
use crate::console::apps::{AppSummary, PublishedVersion, Version};
use crate::repository::FileCommit;
use crate::review::lint::{self, Finding};
use crate::review::{self, DiffFormat};

/// How many commits `app_history` lists.
const HISTORY_LENGTH: usize = 30;

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub app: String,
    pub path: Option<String>,
    pub commit: Option<String>,
    /// Empty when Git's file and Dify's draft are the same app (canvas moves aside).
    pub diff: String,
    pub format: DiffFormat,
}

impl DiffReport {
    pub fn describe(&self) -> String {
        match (&self.path, self.diff.is_empty()) {
            (None, _) => format!("{} has no file in Git yet.", self.app),
            (Some(path), true) => format!("{} in Dify is the same as {path} in Git.", self.app),
            (Some(_), false) if self.format != DiffFormat::Unified => self.diff.clone(),
            (Some(path), false) => format!(
                "From Git ({path}, lines marked -) to Dify's draft of {} (lines marked +):\n{}",
                self.app, self.diff
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub app: String,
    pub path: Option<String>,
    pub commits: Vec<FileCommit>,
    pub published: Vec<PublishedVersion>,
    /// Why `published` is empty when Dify could not be asked (the OpenAPI cannot list them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_unknown: Option<String>,
}

impl HistoryReport {
    pub fn describe(&self) -> String {
        let mut lines = vec![format!(
            "{}: {} commit(s) in Git{}, {} published version(s) in Dify.",
            self.app,
            self.commits.len(),
            self.path
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            self.published.len()
        )];
        lines.extend(self.published_unknown.clone());
        for commit in &self.commits {
            lines.push(format!(
                "- {} {} ({})",
                &commit.commit[..12.min(commit.commit.len())],
                commit.summary,
                commit.author
            ));
        }
        for version in &self.published {
            lines.push(format!(
                "- published {} {}",
                version.version, version.marked_name
            ));
        }
        lines.join("\n")
    }
}

/// The lint findings of the app files on the branch.
#[derive(Debug, Clone, Serialize)]
pub struct LintReport {
    pub apps: Vec<LintedApp>,
    pub errors: usize,
    pub warnings: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LintedApp {
    pub app: String,
    pub path: String,
    pub findings: Vec<Finding>,
}

impl LintReport {
    pub fn describe(&self) -> String {
        let mut lines = vec![format!(
            "{} app(s) checked: {} error(s), {} warning(s).",
            self.apps.len(),
            self.errors,
            self.warnings
        )];
        for app in self.apps.iter().filter(|a| !a.findings.is_empty()) {
            lines.push(
                lint::describe(&app.app, &app.findings)
                    .trim_end()
                    .to_string(),
            );
        }
        lines.join("\n")
    }
}

/// Lints the app files on the branch (all, or those `wanted` names or ids); needs no Dify.
pub async fn lint(ctx: &SyncContext, wanted: &[String]) -> Result<LintReport, SyncError> {
    let (_, repository) = ctx.open().await?;
    let mut report = LintReport {
        apps: Vec::new(),
        errors: 0,
        warnings: 0,
    };
    let chosen = |entry: &crate::repository::IndexEntry| {
        wanted.is_empty()
            || wanted
                .iter()
                .any(|w| w == &entry.app_id || w.eq_ignore_ascii_case(&entry.name))
    };
    for (path, entry) in repository.index().iter().filter(|(_, e)| chosen(e)) {
        let findings = match tokio::task::block_in_place(|| repository.read(path))? {
            Some(bytes) => lint::lint(&String::from_utf8_lossy(&bytes)),
            None => vec![lint::unreadable(format!(
                "{path} is in the index but not on the branch"
            ))],
        };
        let (errors_here, warnings_here) = lint::count(&findings);
        report.errors += errors_here;
        report.warnings += warnings_here;
        report.apps.push(LintedApp {
            app: entry.name.clone(),
            path: path.clone(),
            findings,
        });
    }
    Ok(report)
}

async fn one_app(
    ctx: &SyncContext,
    app: &str,
) -> Result<
    (
        crate::repository::AppRepository,
        AppSummary,
        Vec<AppSummary>,
    ),
    SyncError,
> {
    if app.trim().is_empty() {
        return Err(SyncError::Input("name the app (its name or id)".into()));
    }
    let (_, repository) = ctx.open().await?;
    let in_dify = ctx.console.list_apps().await?;
    let chosen = ctx.select(&[app.trim().to_string()], &in_dify, &repository)?;
    match chosen.as_slice() {
        [one] => Ok((repository, one.clone(), in_dify)),
        many => Err(SyncError::Input(format!(
            "{app:?} names {} apps; use its id: {}",
            many.len(),
            many.iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Git's file at `commit` (default: the branch head) against Dify's current draft, in
/// `format`.
pub async fn diff(
    ctx: &SyncContext,
    app: &str,
    commit: &str,
    format: DiffFormat,
) -> Result<DiffReport, SyncError> {
    let (repository, app, in_dify) = one_app(ctx, app).await?;
    let path = repository.path_of(&app.id).map(str::to_owned);
    let commit = match commit.trim() {
        "" => repository.head(),
        given => Some(given.to_string()),
    };
    let git_text = match (&path, &commit) {
        (Some(path), Some(commit)) => {
            tokio::task::block_in_place(|| repository.read_at(commit, path))?
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    };
    let dify_text = ctx
        .dify_side(&app, &in_dify, Version::Draft)
        .await?
        .map(|exported| exported.text)
        .unwrap_or_default();
    let git_label = format!(
        "git:{}@{} (Git)",
        path.as_deref().unwrap_or_default(),
        commit.as_deref().unwrap_or_default()
    );
    let dify_label = format!("dify:{} (Dify's draft)", app.name);
    let diff = match (&git_text, format) {
        (None, _) => String::new(),
        (Some(git_text), DiffFormat::Unified) => {
            normalized_diff(&git_label, git_text, &dify_label, &dify_text)
        }
        (Some(git_text), semantic) => {
            let title = format!("{}: from Git to Dify's draft", app.name);
            let markdown = semantic == DiffFormat::Markdown;
            let change = review::semantic_change(git_text, &dify_text);
            // The same app both sides: nothing to show, as for the unified diff.
            match change.is_empty() {
                true => String::new(),
                false => change.render(&title, markdown),
            }
        }
    };
    Ok(DiffReport {
        app: app.name,
        path: git_text.as_ref().and(path),
        commit,
        diff,
        format,
    })
}

/// The Git log of the app's file and Dify's published versions.
pub async fn history(ctx: &SyncContext, app: &str) -> Result<HistoryReport, SyncError> {
    let (repository, app, in_dify) = one_app(ctx, app).await?;
    let path = repository.path_of(&app.id).map(str::to_owned);
    let commits = match &path {
        Some(path) => tokio::task::block_in_place(|| repository.history(path, HISTORY_LENGTH))?,
        None => Vec::new(),
    };
    let published = match in_dify.iter().any(|a| a.id == app.id)
        && ["workflow", "advanced-chat"].contains(&app.mode.as_str())
    {
        true => ctx.console.published_versions(&app.id).await?,
        false => Some(Vec::new()),
    };
    Ok(HistoryReport {
        app: app.name,
        path,
        commits,
        published_unknown: published.is_none().then(|| {
            "Published versions are not listed: Dify's OpenAPI has no route for them; sign in \
             to the console API to see them."
                .to_string()
        }),
        published: published.unwrap_or_default(),
    })
}

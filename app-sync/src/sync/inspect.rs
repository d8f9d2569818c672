//! `app_diff` and `app_history`: read-only looks at one app in both places.

use serde::Serialize;

use super::{normalized_diff, SyncContext, SyncError};
use crate::console::apps::{AppSummary, PublishedVersion, Version};
use crate::repository::FileCommit;

/// How many commits `app_history` lists.
const HISTORY_LENGTH: usize = 30;

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub app: String,
    pub path: Option<String>,
    pub commit: Option<String>,
    /// Empty when Git's file and Dify's draft are the same app (canvas moves aside).
    pub diff: String,
}

impl DiffReport {
    pub fn describe(&self) -> String {
        match (&self.path, self.diff.is_empty()) {
            (None, _) => format!("{} has no file in Git yet.", self.app),
            (Some(path), true) => format!("{} in Dify is the same as {path} in Git.", self.app),
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

/// Git's file at `commit` (default: the branch head) against Dify's current draft.
pub async fn diff(ctx: &SyncContext, app: &str, commit: &str) -> Result<DiffReport, SyncError> {
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
    let diff = match &git_text {
        None => String::new(),
        Some(git_text) => normalized_diff(
            &format!(
                "git:{}@{} (Git)",
                path.as_deref().unwrap_or_default(),
                commit.as_deref().unwrap_or_default()
            ),
            git_text,
            &format!("dify:{} (Dify's draft)", app.name),
            &dify_text,
        ),
    };
    Ok(DiffReport {
        app: app.name,
        path: git_text.as_ref().and(path),
        commit,
        diff,
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

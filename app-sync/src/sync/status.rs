//! `sync_status`: for each app, where it stands between Dify and Git. Reads only.

use serde::Serialize;

use super::classify::AppState;
use super::{app_state, git_side, SyncContext, SyncError};
use crate::console::apps::Version;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppStatus {
    pub app: String,
    pub app_id: String,
    pub mode: String,
    pub path: Option<String>,
    pub state: AppState,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusReport {
    pub branch: String,
    pub head: Option<String>,
    pub apps: Vec<AppStatus>,
    /// Apps Dify would not export to compare, with its reason.
    pub not_compared: Vec<String>,
}

impl StatusReport {
    pub fn has_conflict(&self) -> bool {
        self.apps.iter().any(|a| a.state == AppState::Conflict)
    }

    pub fn describe(&self) -> String {
        let mut lines = vec![format!(
            "{} app(s); Git branch {} at {}:",
            self.apps.len(),
            self.branch,
            self.head
                .as_deref()
                .map(|h| &h[..h.len().min(12)])
                .unwrap_or("(empty)")
        )];
        for app in &self.apps {
            lines.push(format!(
                "- {} ({}): {}{}",
                app.app,
                app.mode,
                app.state.describe(),
                app.path
                    .as_deref()
                    .map(|p| format!(" [{p}]"))
                    .unwrap_or_default()
            ));
        }
        for app in &self.not_compared {
            lines.push(format!("- not compared: {app}"));
        }
        lines.join("\n")
    }
}

pub async fn status(ctx: &SyncContext, apps: &[String]) -> Result<StatusReport, SyncError> {
    let (synced, repository) = ctx.open().await?;
    let in_dify = ctx.console.list_apps().await?;
    let chosen = ctx.select(apps, &in_dify, &repository)?;
    let mut report = StatusReport {
        branch: repository.branch_name().to_string(),
        head: repository.head(),
        apps: Vec::new(),
        not_compared: Vec::new(),
    };
    for app in &chosen {
        let dify = match ctx
            .dify_side_or_refusal(app, &in_dify, Version::Draft)
            .await?
        {
            Ok(dify) => dify,
            Err(message) => {
                report.not_compared.push(format!("{}: {message}", app.name));
                continue;
            }
        };
        let git = git_side(&repository, app)?;
        let state = app_state(
            &repository,
            &synced,
            &app.id,
            dify.as_ref().map(|d| d.hash.as_str()),
            git.as_ref().map(|g| g.2.as_str()),
        );
        report.apps.push(AppStatus {
            app: app.name.clone(),
            app_id: app.id.clone(),
            mode: app.mode.clone(),
            path: git
                .map(|g| g.0)
                .or_else(|| repository.path_of(&app.id).map(str::to_owned)),
            state,
        });
    }
    Ok(report)
}

//! `import_apps`: Git → Dify. Only files that changed in Git since the last sync (or the named
//! ones); each app is read again just before its import so a change made in Dify meanwhile is
//! not overwritten, and an app that changed on both sides goes to a conflict branch instead.

use serde::Serialize;

use super::classify::AppState;
use super::{app_state, git_side, push_conflict, Conflict, DifyVersion, SyncContext, SyncError};
use crate::console::apps::{AppSummary, Version};
use crate::dsl;
use crate::state::{AppBase, CreatedApp};

/// The modes Dify can overwrite in place (`app_dsl_service.py`).
const OVERWRITABLE: [&str; 2] = ["workflow", "advanced-chat"];

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Names or ids; empty: every file changed in Git since the last sync.
    pub apps: Vec<String>,
    /// Create apps Dify cannot overwrite (or no longer has) as new apps.
    pub create_new: bool,
    /// Confirm an import Dify holds as pending (a DSL newer than the server's).
    pub confirm_newer_dsl: bool,
    /// Publish each imported workflow or chatflow.
    pub publish: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub app: String,
    pub app_id: String,
    pub path: String,
    /// `completed` or `completed-with-warnings`.
    pub status: String,
    /// True when Dify made a new app (its id differs from the file's).
    pub created: bool,
    pub published: bool,
    /// Plugins the DSL uses that the workspace lacks.
    pub missing_plugins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotImported {
    pub app: String,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub head: Option<String>,
    pub imported: Vec<Imported>,
    pub skipped: Vec<NotImported>,
    /// Dify holds these as pending; `confirm_newer_dsl` confirms them.
    pub pending: Vec<NotImported>,
    pub failed: Vec<NotImported>,
    pub conflicts: Vec<Conflict>,
}

impl ImportReport {
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        match self.imported.is_empty() {
            true => lines.push("Nothing imported.".to_string()),
            false => lines.push(format!("Imported {} app(s):", self.imported.len())),
        }
        for app in &self.imported {
            let mut notes = Vec::new();
            if app.created {
                notes.push(format!("created as a new app {}", app.app_id));
            }
            if app.published {
                notes.push("published".into());
            }
            if app.status != "completed" {
                notes.push(app.status.clone());
            }
            if !app.missing_plugins.is_empty() {
                notes.push(format!(
                    "install these plugins for it to run: {}",
                    app.missing_plugins.join(", ")
                ));
            }
            let notes = match notes.is_empty() {
                true => String::new(),
                false => format!(" ({})", notes.join("; ")),
            };
            lines.push(format!("- {} from {}{notes}", app.app, app.path));
        }
        for (title, list) in [
            ("Pending", &self.pending),
            ("Failed", &self.failed),
            ("Skipped", &self.skipped),
        ] {
            for item in list {
                lines.push(format!(
                    "{title}: {} ({}): {}",
                    item.app, item.path, item.reason
                ));
            }
        }
        for conflict in &self.conflicts {
            lines.push(format!(
                "Conflict: {} changed in Dify and in Git since the last sync. Nothing was overwritten; Dify's version is on branch {}: merge it keeping what you want, then import again.\n{}",
                conflict.app, conflict.branch, conflict.diff
            ));
        }
        lines.join("\n")
    }
}

pub async fn import(ctx: &SyncContext, options: &ImportOptions) -> Result<ImportReport, SyncError> {
    let (mut state, repository) = ctx.open().await?;
    let in_dify = ctx.console.list_apps().await?;
    let mut report = ImportReport {
        head: repository.head(),
        ..ImportReport::default()
    };
    let Some(head) = repository.head() else {
        return Ok(report);
    };
    let candidates: Vec<AppSummary> = match options.apps.is_empty() {
        true => repository
            .index()
            .values()
            .map(|entry| AppSummary {
                id: entry.app_id.clone(),
                name: entry.name.clone(),
                mode: entry.mode.clone(),
            })
            .collect(),
        false => ctx.select(&options.apps, &in_dify, &repository)?,
    };
    for app in &candidates {
        let Some((path, text, git_hash)) = git_side(&repository, app)? else {
            if !options.apps.is_empty() {
                report.skipped.push(NotImported {
                    app: app.name.clone(),
                    path: String::new(),
                    reason: "it has no file in Git; export it first".into(),
                });
            }
            continue;
        };
        let base = state.apps.get(&app.id).cloned();
        let named = !options.apps.is_empty();
        if !named && base.as_ref().is_some_and(|b| b.git_hash == git_hash) {
            continue;
        }
        let skip = |reason: &str| NotImported {
            app: app.name.clone(),
            path: path.clone(),
            reason: reason.to_string(),
        };
        // Read Dify's side again right before writing over it.
        let dify = match ctx
            .dify_side_or_refusal(app, &in_dify, Version::Draft)
            .await?
        {
            Ok(dify) => dify,
            // Nothing to compare with, so nothing is overwritten.
            Err(message) => {
                report.failed.push(skip(&format!(
                    "Dify cannot export it to compare before importing: {message}"
                )));
                continue;
            }
        };
        let dify_hash = dify.as_ref().map(|d| d.0.clone());
        let now = app_state(
            &repository,
            &state,
            &app.id,
            dify_hash.as_deref(),
            Some(&git_hash),
        );
        let target = match now {
            AppState::InSync => {
                report.skipped.push(skip("Dify already has this version"));
                continue;
            }
            AppState::ChangedInDify => {
                report.skipped.push(skip(
                    "only Dify changed it since the last sync; export it instead",
                ));
                continue;
            }
            AppState::Conflict => {
                let (dify_hash, dify_text) = dify.expect("a conflict has both sides");
                let dify = DifyVersion {
                    text: &dify_text,
                    hash: &dify_hash,
                };
                let conflict =
                    push_conflict(&repository, &mut state, app, &path, Some(&text), dify)?;
                report.conflicts.push(conflict);
                continue;
            }
            AppState::ChangedInGit | AppState::OnlyInDify => Some(app.id.clone()),
            AppState::OnlyInGit => None,
        };
        let overwritable = OVERWRITABLE.contains(&app.mode.as_str());
        // A version already imported as a new app is not imported as another one.
        let created = state.created.get(&path).filter(|c| c.git_hash == git_hash);
        if let Some(created) = created.filter(|_| target.is_none() || !overwritable) {
            report.skipped.push(skip(&format!(
                "this version was imported already, as the new app {}",
                created.app_id
            )));
            continue;
        }
        let target = match target {
            Some(_) if !overwritable && !options.create_new => {
                report.skipped.push(skip(&format!(
                    "Dify can overwrite only workflow and chatflow apps, and this is a {} app; import it as a new app with create_new",
                    app.mode
                )));
                continue;
            }
            Some(id) if overwritable => Some(id),
            Some(_) => None,
            None if options.create_new => None,
            None => {
                report.skipped.push(skip(
                    "this workspace has no such app; import it as a new app with create_new",
                ));
                continue;
            }
        };
        let yaml = match &target {
            // A file that is not YAML goes as it is: Dify's refusal names what is wrong.
            Some(_) => dsl::keep_secrets(&app.name, &text).unwrap_or_else(|_| text.clone()),
            None => text.clone(),
        };
        let mut outcome = ctx.console.import_dsl(&yaml, target.as_deref()).await?;
        if outcome.status == "pending" {
            if !options.confirm_newer_dsl {
                report.pending.push(skip(&format!(
                    "its DSL version {} is newer than this Dify's {}; import again with confirm_newer_dsl to accept it",
                    outcome.imported_dsl_version, outcome.current_dsl_version
                )));
                continue;
            }
            outcome = ctx.console.confirm_import(&outcome.import_id).await?;
        }
        if !outcome.status.starts_with("completed") || outcome.app_id.is_empty() {
            report.failed.push(skip(&match outcome.error.is_empty() {
                true => format!("Dify answered {}", outcome.status),
                false => outcome.error.clone(),
            }));
            continue;
        }
        let missing_plugins = match ctx.console.missing_dependencies(&outcome.app_id).await {
            Ok(missing) => missing,
            Err(error) => vec![format!("(could not check: {error})")],
        };
        let published = match options.publish && overwritable {
            true => {
                ctx.console
                    .publish(
                        &outcome.app_id,
                        &format!("git {}", &head[..head.len().min(12)]),
                    )
                    .await?;
                true
            }
            false => false,
        };
        let imported_app = AppSummary {
            id: outcome.app_id.clone(),
            ..app.clone()
        };
        let fresh = ctx
            .console
            .export_dsl(&imported_app.id, Version::Draft)
            .await
            .map_err(SyncError::from)
            .and_then(|text| Ok(dsl::content_hash(&dsl::parse(&app.name, &text)?)));
        match fresh {
            Ok(dify_hash) => {
                state.conflicts.remove(&outcome.app_id);
                state.apps.insert(
                    outcome.app_id.clone(),
                    AppBase {
                        commit: head.clone(),
                        path: path.clone(),
                        dify_hash,
                        git_hash: git_hash.clone(),
                    },
                );
            }
            Err(error) => tracing::warn!("{}: imported, but not read back: {error}", app.name),
        }
        if outcome.app_id != app.id {
            state.created.insert(
                path.clone(),
                CreatedApp {
                    app_id: outcome.app_id.clone(),
                    git_hash: git_hash.clone(),
                },
            );
        }
        report.imported.push(Imported {
            app: app.name.clone(),
            app_id: outcome.app_id.clone(),
            path: path.clone(),
            status: outcome.status.clone(),
            created: outcome.app_id != app.id,
            published,
            missing_plugins,
        });
    }
    ctx.save(state, &repository).await?;
    Ok(report)
}

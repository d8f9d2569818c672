//! Apps whose files were removed in Git since the last sync. An import deletes such an app in
//! Dify only when the target allows it (`deletions: remove_files_and_apps`), the run names it
//! (`delete_apps`, which a dry run lists first) and Dify did not change it since the last sync:
//! its last version is then the file at the last synced commit, which Git keeps.

use serde::Serialize;

use super::classify::AppState;
use super::import::{ImportOptions, ImportReport, NotImported, Planned};
use super::{app_state, author, bullets, SyncContext, SyncError};
use crate::console::apps::{AppSummary, Version};
use crate::repository::AppRepository;
use crate::state::SyncState;

/// An app synced here that Dify still has, whose file the branch no longer has.
pub struct Removed {
    pub app: AppSummary,
    pub path: String,
    /// The last synced commit: it still has the file.
    pub commit: String,
}

impl Removed {
    /// Whether one of `names` (names or ids, as `apps` and `delete_apps` give them) is this
    /// app: its id, or its name in any case.
    pub fn named_in(&self, names: &[String]) -> bool {
        names
            .iter()
            .any(|name| self.app.id == *name || self.app.name.eq_ignore_ascii_case(name))
    }
}

/// An app an import deleted in Dify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub app: String,
    pub app_id: String,
    pub path: String,
    /// The last synced commit, which has the app's last version.
    pub commit: String,
}

impl Deleted {
    pub fn describe(&self) -> String {
        format!(
            "Deleted in Dify: {} ({}), whose file {} was removed in Git. Its last version is in Git: git show {}:{}",
            self.app,
            self.app_id,
            self.path,
            short(&self.commit),
            self.path
        )
    }
}

/// The apps of `state` that Dify has and whose files are gone: none where the index puts
/// the app, none where the last sync left it (a file renamed with its index entry is not
/// removed).
pub fn find(
    repository: &AppRepository,
    state: &SyncState,
    in_dify: &[AppSummary],
) -> Result<Vec<Removed>, SyncError> {
    let mut removed = Vec::new();
    for (app_id, base) in &state.apps {
        let Some(app) = in_dify.iter().find(|a| a.id == *app_id) else {
            continue;
        };
        let indexed = repository.path_of(app_id);
        let mut places = vec![base.path.as_str()];
        places.extend(indexed);
        let mut present = false;
        for path in places {
            present |= tokio::task::block_in_place(|| repository.read(path))?.is_some();
        }
        if !present {
            removed.push(Removed {
                app: app.clone(),
                path: indexed.unwrap_or(&base.path).to_string(),
                commit: base.commit.clone(),
            });
        }
    }
    Ok(removed)
}

/// Refuses, before anything changes, a `delete_apps` this target or this branch cannot
/// honour: the target deletes no apps, or a name is not an app whose file was removed.
pub fn check_confirmed(
    ctx: &SyncContext,
    options: &ImportOptions,
    removed: &[Removed],
) -> Result<(), SyncError> {
    if options.delete_apps.is_empty() {
        return Ok(());
    }
    if !ctx.settings.deletions.deletes_apps() {
        return Err(SyncError::Input(
            "delete_apps: this target deletes no apps in Dify, so nothing was changed; set \
             deletions to remove_files_and_apps to let an import delete the apps whose files \
             were removed in Git"
                .into(),
        ));
    }
    let unknown: Vec<String> = options
        .delete_apps
        .iter()
        .filter(|name| {
            !removed
                .iter()
                .any(|r| r.named_in(std::slice::from_ref(name)))
        })
        .map(|name| format!("{:?}", name.chars().take(80).collect::<String>()))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let which = match removed.is_empty() {
        true => "there are none".to_string(),
        false => format!(
            "they are: {}",
            removed
                .iter()
                .map(|r| r.app.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(SyncError::Input(format!(
        "delete_apps names {}, which is not an app of this Dify whose file was removed in Git since the last sync ({which}); nothing was changed",
        unknown.join(", ")
    )))
}

/// Deletes the removed apps the run names, if Dify did not change them since the last sync;
/// says what it would delete (a dry run), what waits to be named, and what stays.
pub async fn apply(
    ctx: &SyncContext,
    repository: &AppRepository,
    state: &mut SyncState,
    in_dify: &[AppSummary],
    removed: Vec<Removed>,
    options: &ImportOptions,
    report: &mut ImportReport,
) -> Result<(), SyncError> {
    let mut forgotten = Vec::new();
    for removed in removed {
        let named = removed.named_in(&options.delete_apps);
        let Removed { app, path, commit } = removed;
        let not_deleted = |reason: String| NotImported {
            app: app.name.clone(),
            path: path.clone(),
            reason,
        };
        if !ctx.settings.deletions.deletes_apps() {
            report.notes.push(format!(
                "{}: its file {path} was removed in Git; the app stays in Dify, since this target deletes no apps (deletions: remove_files_and_apps lets an import delete it)",
                app.name
            ));
            continue;
        }
        let dify = match ctx
            .dify_side_or_refusal(&app, in_dify, Version::Draft)
            .await?
        {
            Ok(Some(dify)) => dify,
            Ok(None) => continue,
            Err(message) => {
                report.failed.push(not_deleted(format!(
                    "its file was removed in Git, but Dify's version must be compared before it is deleted. {message}"
                )));
                continue;
            }
        };
        let now = app_state(repository, state, &app.id, Some(&dify.hash), None);
        if now != AppState::RemovedInGit {
            let changed = not_deleted(
                "its file was removed in Git, but the app changed in Dify since the last sync, so it is not deleted: delete it in Dify if that change can go, or export it (Dify's version goes to a conflict branch) to keep it".into(),
            );
            // Asked for by name, it is a failure; otherwise a fact.
            match named {
                true => report.failed.push(changed),
                false => report.skipped.push(changed),
            }
            continue;
        }
        if !named {
            report.to_confirm.push(app.name.clone());
        }
        if options.dry_run {
            report.planned.push(Planned {
                app: app.name.clone(),
                path: path.clone(),
                action: format!(
                    "delete it in Dify{}, with its logs, conversations and API keys (its file was removed in Git; its last version stays in Git at commit {})",
                    match named {
                        true => "",
                        false => " once named in delete_apps",
                    },
                    short(&commit)
                ),
            });
            continue;
        }
        if !named {
            report.skipped.push(not_deleted(
                "its file was removed in Git: an import deletes it only when it names the app in delete_apps (a dry run lists what would be deleted)".into(),
            ));
            continue;
        }
        if let Err(error) = ctx.console.delete_app(&app.id).await {
            report
                .failed
                .push(not_deleted(format!("not deleted in Dify: {error}")));
            continue;
        }
        state.apps.remove(&app.id);
        state.conflicts.remove(&app.id);
        if repository
            .index()
            .get(&path)
            .is_some_and(|e| e.app_id == app.id)
        {
            forgotten.push(path.clone());
        }
        report.deleted.push(Deleted {
            app: app.name.clone(),
            app_id: app.id.clone(),
            path,
            commit,
        });
    }
    forget(repository, &forgotten, report);
    Ok(())
}

/// Removes the index entries of deleted apps whose files were removed without them.
fn forget(repository: &AppRepository, paths: &[String], report: &mut ImportReport) {
    if paths.is_empty() {
        return;
    }
    let mut index = repository.index().clone();
    for path in paths {
        index.remove(path);
    }
    let changes = repository.index_changes(&index);
    let message = format!(
        "Forget the apps deleted in Dify\n\nTheir files were removed in Git:\n{}\n",
        bullets(paths)
    );
    let pushed =
        tokio::task::block_in_place(|| repository.commit_and_push(&changes, &message, &author()));
    if let Err(error) = pushed {
        // A stale entry names an app Dify no longer has: every run passes it by.
        report.notes.push(format!(
            "The apps were deleted, but their index entries could not be removed ({error})."
        ));
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

//! `export_apps`: Dify → Git. One commit for every app that changed in Dify, pushed to the
//! branch; an app that changed on both sides goes, untouched, to a conflict branch of its own.

use git_remote::FileChange;
use serde::Serialize;

use super::classify::AppState;
use super::{
    app_state, author, bullets, git_side, push_conflict, Conflict, DifyVersion, SyncContext,
    SyncError,
};
use crate::console::apps::Version;
use crate::dsl;
use crate::repository::{AppRepository, IndexEntry};
use crate::state::AppBase;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Names or ids; empty: every app.
    pub apps: Vec<String>,
    pub version: Version,
    /// The commit's first line (else one that names the apps).
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportReport {
    /// The commit pushed to the branch, if anything changed.
    pub commit: Option<String>,
    pub branch: String,
    /// Files written (new or changed apps).
    pub exported: Vec<String>,
    pub unchanged: Vec<String>,
    /// Changed in Git only: left for `import_apps`.
    pub changed_in_git: Vec<String>,
    pub conflicts: Vec<Conflict>,
    /// Apps Dify would not export, with its reason.
    pub skipped: Vec<String>,
    /// What an environment's export noticed (a value that differs from its file), and apps
    /// deleted in Dify whose files stay.
    pub notes: Vec<String>,
    /// Files removed: their apps were deleted in Dify (`deletions` removes files).
    pub removed: Vec<String>,
}

impl ExportReport {
    pub fn describe(&self) -> String {
        let mut text = match &self.commit {
            Some(commit) => format!(
                "Exported {} app(s) to {} in commit {}: {}.",
                self.exported.len(),
                self.branch,
                &commit[..commit.len().min(12)],
                self.exported.join(", ")
            ),
            None if self.conflicts.is_empty()
                && self.changed_in_git.is_empty()
                && self.skipped.is_empty() =>
            {
                format!(
                    "Nothing to commit: Git's {} already has every app.",
                    self.branch
                )
            }
            None => format!("Nothing committed to {}.", self.branch),
        };
        if !self.unchanged.is_empty() {
            text.push_str(&format!(" {} unchanged.", self.unchanged.len()));
        }
        if !self.changed_in_git.is_empty() {
            text.push_str(&format!(
                " Changed in Git, not exported (run import_apps): {}.",
                self.changed_in_git.join(", ")
            ));
        }
        for skipped in &self.skipped {
            text.push_str(&format!("\nNot exported: {skipped}"));
        }
        if !self.removed.is_empty() {
            text.push_str(&format!(
                " Removed the files of apps deleted in Dify: {}.",
                self.removed.join(", ")
            ));
        }
        for note in &self.notes {
            text.push_str(&format!("\nNote: {note}"));
        }
        for conflict in &self.conflicts {
            text.push_str(&format!(
                "\nConflict: {} changed in Dify and in Git since the last sync. Nothing was overwritten; Dify's version is on branch {}. Merge it into {} keeping what you want (git merge -s ours keeps Git's), then import.\n{}",
                conflict.app, conflict.branch, self.branch, conflict.diff
            ));
        }
        text
    }
}

pub async fn export(ctx: &SyncContext, options: &ExportOptions) -> Result<ExportReport, SyncError> {
    let (mut state, repository) = ctx.open().await?;
    let in_dify = ctx.console.list_apps().await?;
    let chosen = ctx.select(&options.apps, &in_dify, &repository)?;
    let head = repository.head();
    let mut report = ExportReport {
        branch: repository.branch_name().to_string(),
        ..ExportReport::default()
    };
    let mut changes = Vec::new();
    let mut index = repository.index().clone();
    // Bases to record once the push succeeded: (app id, base without its commit).
    let mut bases = Vec::new();
    let mut conflicts = Vec::new();
    for app in &chosen {
        // An app an environment has, of the name of a file it is not mapped to, is that
        // file's app made there by hand: a second file would make a second app elsewhere.
        let unmapped_namesake = repository.index().iter().find(|(_, e)| {
            AppRepository::is_unmapped(&e.app_id) && e.name == app.name && e.mode == app.mode
        });
        if let Some((path, _)) = unmapped_namesake.filter(|_| repository.path_of(&app.id).is_none())
        {
            if in_dify.iter().any(|a| a.id == app.id) {
                report.skipped.push(format!(
                    "{}: {path} is an app of that name this environment is not mapped to; map the file to this app (apps: {{{}: {}}} in the environment's file) or delete one of the two",
                    app.name,
                    path.rsplit('/').next().unwrap_or_default(),
                    app.id
                ));
            }
            continue;
        }
        let side = ctx
            .dify_side_or_refusal(app, &in_dify, options.version)
            .await?;
        let exported = match side {
            Ok(Some(side)) => side,
            Ok(None) => {
                deleted_in_dify(
                    ctx,
                    &repository,
                    &state,
                    app,
                    &mut index,
                    &mut changes,
                    &mut report,
                )?;
                continue;
            }
            // This app cannot be exported (no draft yet, not published): the others can.
            Err(message) => {
                report.skipped.push(format!("{}: {message}", app.name));
                continue;
            }
        };
        // Nothing secret goes to Git, not even to a conflict branch.
        let checked = dsl::check_secrets(&app.name, &dsl::parse(&app.name, &exported.text)?);
        if let Some(refusal) = checked
            .err()
            .map(|e| e.to_string())
            .or_else(|| ctx.refuses(app, &exported))
        {
            report.skipped.push(refusal);
            continue;
        }
        let (dify_hash, text) = (exported.hash, exported.text);
        let git = git_side(&repository, app)?;
        let path = dsl::free_app_path(&index, repository.directory(), &app.name, &app.id);
        let entry = IndexEntry {
            app_id: app.id.clone(),
            mode: app.mode.clone(),
            name: app.name.clone(),
        };
        let git_hash = git.as_ref().map(|g| g.2.as_str());
        match app_state(&repository, &state, &app.id, Some(&dify_hash), git_hash) {
            AppState::OnlyInDify | AppState::ChangedInDify => {
                let path = match (&git, repository.in_environment()) {
                    // An environment does not rename the files the Difys share.
                    (Some((old, _, _)), true) => old.clone(),
                    _ => path,
                };
                if let Some((old, _, _)) = git.as_ref().filter(|(old, _, _)| *old != path) {
                    // Renamed in Dify: the file follows the name.
                    changes.push(FileChange {
                        path: old.clone(),
                        content: None,
                    });
                    index.remove(old);
                }
                changes.push(FileChange {
                    path: path.clone(),
                    content: Some(text.into_bytes()),
                });
                index.insert(path.clone(), entry);
                report.exported.push(path.clone());
                report
                    .notes
                    .extend(exported.notes.iter().map(|n| format!("{}: {n}", app.name)));
                bases.push((app.id.clone(), path, dify_hash.clone(), dify_hash));
            }
            AppState::InSync => {
                let (git_path, _, git_hash) = git.expect("in sync means a file");
                report.unchanged.push(git_path.clone());
                bases.push((app.id.clone(), git_path, dify_hash, git_hash));
            }
            AppState::ChangedInGit => {
                report.changed_in_git.push(git.map(|g| g.0).unwrap_or(path));
            }
            AppState::RemovedInGit => report.notes.push(format!(
                "{}: its file was removed in Git; the app stays in Dify {}",
                app.name,
                match ctx.settings.deletions.deletes_apps() {
                    true => "until an import that names it in delete_apps deletes it",
                    false => "(deletions: remove_files_and_apps lets an import delete it)",
                }
            )),
            AppState::Conflict => conflicts.push((app.clone(), path, text, dify_hash, git)),
            AppState::OnlyInGit => {}
        }
    }
    if !changes.is_empty() {
        changes.extend(repository.index_changes(&index));
    }
    let message = commit_message(
        &options.message,
        &report.exported,
        &report.removed,
        options.version,
    );
    let commit =
        tokio::task::block_in_place(|| repository.commit_and_push(&changes, &message, &author()))?;
    report.commit = commit.clone();
    for (app, path, text, hash, git) in conflicts {
        let (file, git_text) = match &git {
            Some((git_path, git_text, _)) => (git_path.as_str(), Some(git_text.as_str())),
            None => (path.as_str(), None),
        };
        let dify = DifyVersion {
            text: &text,
            hash: &hash,
        };
        let conflict = push_conflict(&repository, &mut state, &app, file, git_text, dify)?;
        report.conflicts.push(conflict);
    }
    if commit.is_some() {
        for path in &report.removed {
            let gone: Vec<String> = state
                .apps
                .iter()
                .filter(|(_, base)| base.path == *path)
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                state.apps.remove(&id);
                state.conflicts.remove(&id);
            }
        }
    }
    let synced_commit = commit.or(head).unwrap_or_default();
    for (app_id, path, dify_hash, git_hash) in bases {
        state.conflicts.remove(&app_id);
        state.apps.insert(
            app_id,
            AppBase {
                commit: synced_commit.clone(),
                path,
                dify_hash,
                git_hash,
            },
        );
    }
    ctx.save(state, &repository).await?;
    Ok(report)
}

/// An app of the index that Dify no longer has: when `deletions` removes files, its file goes
/// in this export's commit, if Git did not change it since the last sync; otherwise it stays,
/// and a file that changed is named. An environment never removes the files the Difys share.
fn deleted_in_dify(
    ctx: &SyncContext,
    repository: &AppRepository,
    state: &crate::state::SyncState,
    app: &crate::console::apps::AppSummary,
    index: &mut crate::repository::Index,
    changes: &mut Vec<FileChange>,
    report: &mut ExportReport,
) -> Result<(), SyncError> {
    let Some(base) = state.apps.get(&app.id) else {
        return Ok(());
    };
    if !ctx.settings.deletions.removes_files() {
        return Ok(());
    }
    let Some((path, _, git_hash)) = git_side(repository, app)? else {
        return Ok(());
    };
    match (repository.in_environment(), git_hash == base.git_hash) {
        (true, _) => report.notes.push(format!(
            "{} was deleted in this environment's Dify; its file is shared with the other environments and stays (remove it in Git to remove the app everywhere)",
            app.name
        )),
        (false, false) => report.notes.push(format!(
            "{} was deleted in Dify, and {path} changed in Git since the last sync: the file stays",
            app.name
        )),
        (false, true) => {
            changes.push(FileChange {
                path: path.clone(),
                content: None,
            });
            index.remove(&path);
            report.removed.push(path);
        }
    }
    Ok(())
}

fn commit_message(
    first_line: &str,
    exported: &[String],
    removed: &[String],
    version: Version,
) -> String {
    let names: Vec<&str> = exported
        .iter()
        .map(|p| p.rsplit('/').next().unwrap_or(p).trim_end_matches(".yml"))
        .collect();
    let summary = match (first_line.trim(), names.len()) {
        ("", 0) => format!(
            "Remove the files of {} app(s) deleted in Dify",
            removed.len()
        ),
        ("", 1) => format!("Export {} from Dify", names[0]),
        ("", n) => format!("Export {n} apps from Dify"),
        (line, _) => line.lines().next().unwrap_or(line).to_string(),
    };
    let which = match version {
        Version::Draft => "drafts",
        Version::Published => "published versions",
    };
    let mut message = format!("{summary}\n\n");
    if !exported.is_empty() {
        message.push_str(&format!(
            "Exported ({which}) by Dify App Git Sync:\n{}\n",
            bullets(exported)
        ));
    }
    if !removed.is_empty() {
        message.push_str(&format!(
            "Removed (the apps were deleted in Dify):\n{}\n",
            bullets(removed)
        ));
    }
    message
}

//! `import_apps`: Git → Dify. Only files that changed in Git since the last sync (or the named
//! ones); each app is read again just before its import so a change made in Dify meanwhile is
//! not overwritten, and an app that changed on both sides goes to a conflict branch instead.

use serde::Serialize;

use super::classify::AppState;
use super::removed_in_git::{self, Deleted};
use git_remote::FileChange;

use super::{
    app_state, author, bullets, git_side, push_conflict, Conflict, DifyVersion, SyncContext,
    SyncError,
};
use crate::console::apps::{AppSummary, Version};
use crate::dsl::{self, DslError};
use crate::environment::remap;
use crate::repository::{AppRepository, IndexEntry};
use crate::secrets;
use crate::state::{AppBase, CreatedApp, SyncState};

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
    /// Say what an import would do (overwrite, create, refuse, conflict) and change nothing:
    /// not Dify, not Git, not the remembered state.
    pub dry_run: bool,
    /// Names or ids of apps whose files were removed in Git, to delete in Dify (only with
    /// `deletions: remove_files_and_apps`; a dry run lists them first).
    pub delete_apps: Vec<String>,
}

/// What an import would do with one app (a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub app: String,
    pub path: String,
    pub action: String,
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
    /// What Dify warned about (an older DSL version, say).
    pub warnings: Vec<String>,
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
    /// What else happened (files mapped to the apps created from them).
    pub notes: Vec<String>,
    /// A dry run: nothing was changed, and `planned` says what an import would do.
    pub dry_run: bool,
    pub planned: Vec<Planned>,
    /// Apps deleted in Dify, their files having been removed in Git.
    pub deleted: Vec<Deleted>,
    /// Apps whose files were removed in Git that an import deletes once `delete_apps` names
    /// them.
    pub to_confirm: Vec<String>,
}

impl ImportReport {
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        match (self.dry_run, self.imported.is_empty()) {
            (true, _) => lines.push(format!(
                "Dry run: nothing was changed. An import would change {} app(s):",
                self.planned.len()
            )),
            (false, true) => lines.push("Nothing imported.".to_string()),
            (false, false) => lines.push(format!("Imported {} app(s):", self.imported.len())),
        }
        for planned in &self.planned {
            lines.push(format!(
                "- would {}: {} from {}",
                planned.action, planned.app, planned.path
            ));
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
            if !app.warnings.is_empty() {
                notes.push(format!("Dify warns: {}", app.warnings.join("; ")));
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
        lines.extend(self.deleted.iter().map(Deleted::describe));
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
        lines.extend(self.notes.iter().cloned());
        if !self.to_confirm.is_empty() {
            let names = self.to_confirm.join(", ");
            lines.push(format!(
                "To delete in Dify the {} app(s) whose files were removed in Git, import again naming them: delete_apps: {names} (command line: --delete-apps '{names}')",
                self.to_confirm.len()
            ));
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
    if options.publish {
        // Before anything is imported: an import that cannot be published is not half done.
        ctx.console.can_publish().await?;
    }
    let in_dify = ctx.console.list_apps().await?;
    let mut report = ImportReport {
        head: repository.head(),
        dry_run: options.dry_run,
        ..ImportReport::default()
    };
    let Some(head) = repository.head() else {
        return Ok(report);
    };
    let mut removed = removed_in_git::find(&repository, &state, &in_dify)?;
    if !options.apps.is_empty() {
        removed.retain(|r| r.named_in(&options.apps) || r.named_in(&options.delete_apps));
    }
    removed_in_git::check_confirmed(ctx, options, &removed)?;
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
    let mut remaps = Vec::new();
    for app in &candidates {
        let Some((path, text, git_hash)) = git_side(&repository, app)? else {
            // An app whose file was removed is the deletions' (below).
            if !options.apps.is_empty() && !removed.iter().any(|r| r.app.id == app.id) {
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
        // A version already imported as a new app is not imported as another one; its file
        // now belongs to that app (mapping it may have failed after the import).
        if let Some(created) = state.created.get(&path).filter(|c| c.git_hash == git_hash) {
            if in_dify.iter().any(|a| a.id == created.app_id) && created.app_id != app.id {
                match options.dry_run {
                    true => report.planned.push(Planned {
                        app: app.name.clone(),
                        path: path.clone(),
                        action: format!(
                            "map its file to the app {} created from it before",
                            created.app_id
                        ),
                    }),
                    false => remaps.push(Remap::of(app, &path, &created.app_id, &text, &git_hash)),
                }
                continue;
            }
        }
        // An entry of the index this target never synced (a new file, or one naming an app
        // that was never exported here) is only in Git: Dify's app of that id is not read,
        // compared or written, whatever the entry says.
        let dify = match &base {
            None => None,
            // Read Dify's side again right before writing over it.
            Some(_) => match ctx
                .dify_side_or_refusal(app, &in_dify, Version::Draft)
                .await?
            {
                Ok(dify) => dify,
                // Nothing to compare with, so nothing is overwritten.
                Err(message) => {
                    report.failed.push(skip(&format!(
                        "not imported, since Dify's version must be compared first. {message}"
                    )));
                    continue;
                }
            },
        };
        let now = match &base {
            None => AppState::OnlyInGit,
            Some(_) => app_state(
                &repository,
                &state,
                &app.id,
                dify.as_ref().map(|d| d.hash.as_str()),
                Some(&git_hash),
            ),
        };
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
            AppState::Conflict if options.dry_run => {
                report.planned.push(Planned {
                    app: app.name.clone(),
                    path: path.clone(),
                    action: "stop at a conflict (it changed in Dify and in Git since the last \
                             sync): Dify's version would go to a conflict branch, nothing \
                             overwritten"
                        .into(),
                });
                continue;
            }
            AppState::Conflict => {
                let dify = dify.expect("a conflict has both sides");
                if let Some(refusal) = ctx.refuses(app, &dify) {
                    report.failed.push(skip(&format!(
                        "it changed in Dify and in Git since the last sync, and Dify's version cannot go to a conflict branch: {refusal}"
                    )));
                    continue;
                }
                let dify_version = DifyVersion {
                    text: &dify.text,
                    hash: &dify.hash,
                };
                let conflict = push_conflict(
                    &repository,
                    &mut state,
                    app,
                    &path,
                    Some(&text),
                    dify_version,
                )?;
                report.conflicts.push(conflict);
                continue;
            }
            AppState::ChangedInGit | AppState::OnlyInDify => Some(app.id.clone()),
            AppState::OnlyInGit => None,
            // Not with a file: the deletions (below) take those.
            AppState::RemovedInGit => continue,
        };
        let overwritable = OVERWRITABLE.contains(&app.mode.as_str());
        // An environment creates its copy of an app the first time it is promoted to it.
        let unmapped = AppRepository::is_unmapped(&app.id);
        // An app the environment's file adopts is overwritten by its file the first time.
        let adopted = base.is_none() && repository.adopts(&app.id);
        let target = match target {
            None if unmapped => None,
            None if adopted && overwritable && in_dify.iter().any(|a| a.id == app.id) => {
                Some(app.id.clone())
            }
            Some(_) if !overwritable && !options.create_new => {
                report.skipped.push(skip(&format!(
                    "Dify can overwrite only workflow and chatflow apps, and this is {} app; import it as a new app with create_new",
                    with_article(&app.mode)
                )));
                continue;
            }
            Some(id) if overwritable => Some(id),
            Some(_) => None,
            None if options.create_new => None,
            None if base.is_none() && in_dify.iter().any(|a| a.id == app.id) => {
                report.skipped.push(skip(
                    "the index names an app of this workspace that was never synced with this repository here, so it is left alone; export it first to sync it, or import the file as a new app with create_new",
                ));
                continue;
            }
            None => {
                report.skipped.push(skip(
                    "this workspace has no such app; import it as a new app with create_new",
                ));
                continue;
            }
        };
        // The secrets of placeholders come from this same app as Dify has it now.
        let current = dify
            .as_ref()
            .map(|d| secrets::values(&d.secrets))
            .unwrap_or_default();
        let yaml = match dsl::for_import(&app.name, &text, &current, target.is_some()) {
            Ok(yaml) => yaml,
            // A file that is not YAML goes as it is: Dify's refusal names what is wrong.
            Err(DslError::NotYaml { .. }) => text.clone(),
            Err(error) => {
                report.failed.push(skip(&error.to_string()));
                continue;
            }
        };
        let (yaml, remapped) = match for_this_dify(ctx, &app.name, yaml) {
            Ok(resolved) => resolved,
            Err(refusal) => {
                report.failed.push(skip(&refusal));
                continue;
            }
        };
        if options.dry_run {
            let action = match &target {
                Some(id) => format!("overwrite app {id} in place"),
                None => "create a new app".into(),
            };
            report.planned.push(Planned {
                app: app.name.clone(),
                path: path.clone(),
                action: match remapped.is_empty() {
                    true => action,
                    false => format!("{action}, with {}", remapped.join("; ")),
                },
            });
            continue;
        }
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
        // Dify's answer may quote the DSL it got, secrets put back included.
        outcome.error = secrets::hide_values(&outcome.error, &current);
        for warning in &mut outcome.warnings {
            *warning = secrets::hide_values(warning, &current);
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
        let created = outcome.app_id != app.id;
        if created {
            state.created.insert(
                path.clone(),
                CreatedApp {
                    app_id: outcome.app_id.clone(),
                    git_hash: git_hash.clone(),
                },
            );
            remaps.push(Remap::of(app, &path, &outcome.app_id, &text, &git_hash));
        } else {
            record_base(
                ctx,
                &mut state,
                app,
                &outcome.app_id,
                &path,
                &head,
                &git_hash,
            )
            .await;
        }
        report.imported.push(Imported {
            app: app.name.clone(),
            app_id: outcome.app_id.clone(),
            path: path.clone(),
            status: outcome.status.clone(),
            created,
            published,
            missing_plugins,
            warnings: outcome.warnings.clone(),
        });
    }
    removed_in_git::apply(
        ctx,
        &repository,
        &mut state,
        &in_dify,
        removed,
        options,
        &mut report,
    )
    .await?;
    if options.dry_run {
        return Ok(report);
    }
    if !remaps.is_empty() {
        map_files_to_new_apps(ctx, &repository, &mut state, &remaps, &mut report).await;
    }
    ctx.save(state, &repository).await?;
    Ok(report)
}

/// The DSL to import into this run's Dify, with what was remapped for it; an environment
/// resolves the files' references for its Dify and refuses an app whose references or
/// plugins it lacks, by name. Without an environment a file written by one is refused, since
/// Dify would drop the knowledge bases and tools it names.
fn for_this_dify(
    ctx: &SyncContext,
    app: &str,
    yaml: String,
) -> Result<(String, Vec<String>), String> {
    let Ok(mut dsl) = dsl::parse(app, &yaml) else {
        // Not YAML: Dify's refusal names what is wrong.
        return Ok((yaml, Vec::new()));
    };
    let Some(promotion) = ctx.promotion() else {
        return match remap::is_neutral(&dsl) {
            true => Err("the file names its knowledge bases or workflow tools by name, as an environment's export writes them; import it with that environment (--target NAME, or the environment field of the credentials)".into()),
            false => Ok((yaml, Vec::new())),
        };
    };
    let name = &promotion.environment.name;
    let mut refusals = Vec::new();
    match remap::missing_plugins(&dsl, &promotion.catalog) {
        Ok(missing) if !missing.is_empty() => refusals.push(format!(
            "plugins it depends on are not installed in this Dify: {}; install them first",
            missing.join(", ")
        )),
        Ok(_) => {}
        // Dify's own check after the import still names them.
        Err(why) => tracing::warn!("{app}: the plugins of {name} cannot be listed ({why})"),
    }
    let resolved = remap::to_target(&mut dsl, &promotion.environment, &promotion.catalog);
    refusals.extend(resolved.unresolved);
    if !refusals.is_empty() {
        return Err(format!(
            "refused for the environment {name}, nothing changed: {}",
            refusals.join("; ")
        ));
    }
    let yaml = serde_yaml::to_string(&dsl).map_err(|e| e.to_string())?;
    Ok((yaml, resolved.remapped))
}

/// `an agent`, `a chat`: the mode with its article.
fn with_article(mode: &str) -> String {
    match mode.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => format!("an {mode}"),
        false => format!("a {mode}"),
    }
}

/// An app file imported as a new app: the file moves to the new app's name and the index
/// maps it to that app, so status, export and import all see one app with one file.
struct Remap {
    app: AppSummary,
    old_path: String,
    new_id: String,
    text: String,
    git_hash: String,
}

impl Remap {
    fn of(app: &AppSummary, path: &str, new_id: &str, text: &str, git_hash: &str) -> Remap {
        Remap {
            app: app.clone(),
            old_path: path.to_string(),
            new_id: new_id.to_string(),
            text: text.to_string(),
            git_hash: git_hash.to_string(),
        }
    }
}

/// Records the base of an app just imported: Dify's version as it reads back now.
async fn record_base(
    ctx: &SyncContext,
    state: &mut SyncState,
    app: &AppSummary,
    app_id: &str,
    path: &str,
    commit: &str,
    git_hash: &str,
) {
    let fresh = ctx
        .exported(app_id, &app.name, Version::Draft)
        .await
        .map(|exported| exported.hash);
    match fresh {
        Ok(dify_hash) => {
            state.conflicts.remove(app_id);
            state.apps.insert(
                app_id.to_string(),
                AppBase {
                    commit: commit.to_string(),
                    path: path.to_string(),
                    dify_hash,
                    git_hash: git_hash.to_string(),
                },
            );
        }
        Err(error) => tracing::warn!("{}: imported, but not read back: {error}", app.name),
    }
}

/// One commit that gives each new app its file (renamed for its id) and index entry. The
/// app the file belonged to is no longer tracked: it stays in Dify and, unless deleted
/// there, a later export adds it as an app of its own. A refused push is noted; the next
/// import maps the files again (from `state.created`), never creating a second app.
async fn map_files_to_new_apps(
    ctx: &SyncContext,
    repository: &AppRepository,
    state: &mut SyncState,
    remaps: &[Remap],
    report: &mut ImportReport,
) {
    let mut index = repository.index().clone();
    let mut changes = Vec::new();
    let mut moved = Vec::new();
    let mut paths = Vec::new();
    for remap in remaps {
        index.remove(&remap.old_path);
        // The files are shared: an environment maps its app to the file where it is.
        let new_path = match repository.in_environment() {
            true => remap.old_path.clone(),
            false => dsl::free_app_path(
                &index,
                repository.directory(),
                &remap.app.name,
                &remap.new_id,
            ),
        };
        paths.push(new_path.clone());
        index.insert(
            new_path.clone(),
            IndexEntry {
                app_id: remap.new_id.clone(),
                mode: remap.app.mode.clone(),
                name: remap.app.name.clone(),
            },
        );
        if new_path != remap.old_path {
            changes.push(FileChange {
                path: remap.old_path.clone(),
                content: None,
            });
        }
        changes.push(FileChange {
            path: new_path.clone(),
            content: Some(remap.text.clone().into_bytes()),
        });
        moved.push(format!("{} → {new_path}", remap.old_path));
    }
    changes.extend(repository.index_changes(&index));
    let message = format!(
        "Map app files to the apps Dify created from them\n\n{}\n",
        bullets(&moved)
    );
    let pushed =
        tokio::task::block_in_place(|| repository.commit_and_push(&changes, &message, &author()));
    let commit = match pushed {
        Ok(commit) => commit.or_else(|| repository.head()).unwrap_or_default(),
        Err(error) => {
            report.notes.push(format!(
                "The new apps were created, but their files could not be mapped to them in Git ({error}); the next import maps them."
            ));
            return;
        }
    };
    for (remap, new_path) in remaps.iter().zip(paths) {
        state.created.remove(&remap.old_path);
        if state
            .apps
            .get(&remap.app.id)
            .is_some_and(|b| b.path == remap.old_path)
        {
            state.apps.remove(&remap.app.id);
            state.conflicts.remove(&remap.app.id);
        }
        record_base(
            ctx,
            state,
            &remap.app,
            &remap.new_id,
            &new_path,
            &commit,
            &remap.git_hash,
        )
        .await;
        report.notes.push(format!(
            "{} now belongs to the new app {} ({new_path}).{}",
            remap.old_path,
            remap.new_id,
            match remap.app.id == remap.new_id || AppRepository::is_unmapped(&remap.app.id) {
                true => String::new(),
                false => format!(
                    " The app it came from ({}) stays in Dify: delete it there, or the next export adds it as an app of its own.",
                    remap.app.id
                ),
            }
        ));
    }
}

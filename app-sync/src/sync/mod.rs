//! One sync run: what it needs (settings, the console, the Git client, where the state is),
//! the errors it can end with, and the helpers export, import, status and the inspections
//! share.

pub mod classify;
pub mod export;
pub mod import;
pub mod inspect;
pub mod removed_in_git;
pub mod status;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use git_remote::{Author, FileChange, GitClient, GitError};
use serde::Serialize;
use serde_json::Value;

use crate::console::apps::AppSummary;
use crate::console::{Console, ConsoleError};
use crate::dsl::{self, DslError, Exported};
use crate::environment::catalog::Catalog;
use crate::environment::{remap, Environment};
use crate::repository::AppRepository;
use crate::settings::{SecretsInGit, Settings};
use crate::state::{ConflictBranch, StateError, StateStore, SyncState};
use classify::{classify, AppState};

/// Who the commits are by.
pub fn author() -> Author {
    Author {
        name: "Dify App Git Sync".into(),
        email: "app-git-sync@dify.invalid".into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Console(#[from] ConsoleError),
    #[error("{0}")]
    Git(#[from] GitError),
    #[error("{0}")]
    Dsl(#[from] DslError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Input(String),
}

/// Everything a run works with.
pub struct SyncContext {
    pub settings: Settings,
    pub console: Arc<Console>,
    pub git: Arc<GitClient>,
    pub store: StateStore,
    /// The run's environment, once [`SyncContext::open`] read it (none without one).
    promotion: OnceLock<Promotion>,
    /// A second record of the same target, read and written with `store` (the tools keep
    /// one where the push webhook, which runs without a session, reads it).
    local_copy: Option<StateStore>,
    /// A record read earlier, merged in on open and never written (the tools' record, read
    /// while the webhook's session was open).
    seed: Option<SyncState>,
}

/// An environment, what its Dify has, and the values the files give the variables it maps
/// (by app id), for the exports that write those back.
pub struct Promotion {
    pub environment: Environment,
    pub catalog: Catalog,
    git_values: BTreeMap<String, BTreeMap<String, Value>>,
}

impl SyncContext {
    pub fn new(
        settings: Settings,
        console: Arc<Console>,
        git: Arc<GitClient>,
        store: StateStore,
    ) -> SyncContext {
        SyncContext {
            settings,
            console,
            git,
            store,
            promotion: OnceLock::new(),
            local_copy: None,
            seed: None,
        }
    }

    /// Reads and writes the state in `copy` too.
    pub fn with_local_copy(mut self, copy: StateStore) -> SyncContext {
        self.local_copy = Some(copy);
        self
    }

    /// Merges `seed` into the state on open.
    pub fn with_seed(mut self, seed: SyncState) -> SyncContext {
        self.seed = Some(seed);
        self
    }

    /// The sync state and the branch, fetched for this run; with an environment, the
    /// branch as it sees it, and what its Dify has that the apps refer to.
    pub async fn open(&self) -> Result<(SyncState, AppRepository), SyncError> {
        let target = self.settings.target_key();
        let mut state = self.store.load(&target).await?;
        let mut others = Vec::new();
        if let Some(copy) = &self.local_copy {
            // A copy that cannot be read is only a copy.
            match copy.load(&target).await {
                Ok(other) => others.push(other),
                Err(error) => tracing::warn!("the local copy of the sync state: {error}"),
            }
        }
        others.extend(self.seed.clone());
        for other in &others {
            for (host, key) in &other.host_keys {
                state.host_keys.entry(host.clone()).or_insert(key.clone());
            }
        }
        let settings = &self.settings;
        let repository = tokio::task::block_in_place(|| {
            AppRepository::open(
                self.git.clone(),
                &settings.repository_url,
                &settings.branch,
                &settings.directory,
                &settings.git,
                &state.host_keys,
            )
        })?;
        for other in others {
            state = state.merge(other, |a, b| repository.descends(b, a));
        }
        if settings.environment.is_empty() {
            return Ok((state, repository));
        }
        let (repository, environment) = repository.for_environment(&settings.environment)?;
        let catalog = Catalog::read(&self.console, &environment).await?;
        let mut git_values = BTreeMap::new();
        if !environment.environment_variables.is_empty() {
            for (path, entry) in repository.index() {
                let Some(bytes) = tokio::task::block_in_place(|| repository.read(path))? else {
                    continue;
                };
                if let Ok(dsl) = dsl::parse(path, &String::from_utf8_lossy(&bytes)) {
                    let values = remap::mapped_values(&dsl, &environment);
                    git_values.insert(entry.app_id.clone(), values);
                }
            }
        }
        // A second open in one run reads the same branch: the first reading stands.
        let _ = self.promotion.set(Promotion {
            environment,
            catalog,
            git_values,
        });
        Ok((state, repository))
    }

    /// The run's environment ([`SyncContext::open`] reads it).
    pub fn promotion(&self) -> Option<&Promotion> {
        self.promotion.get()
    }

    /// Saves the state (with any SSH host key trusted on first use).
    pub async fn save(
        &self,
        mut state: SyncState,
        repository: &AppRepository,
    ) -> Result<(), SyncError> {
        repository.host_keys(&mut state.host_keys);
        let target = self.settings.target_key();
        if let Some(copy) = &self.local_copy {
            if let Err(error) = copy.save(&target, &state).await {
                tracing::warn!("the local copy of the sync state: {error}");
            }
        }
        Ok(self.store.save(&target, &state).await?)
    }

    /// The apps `wanted` names (names or ids, case-insensitive for names), from Dify's list
    /// and the repository's index; every app when `wanted` is empty. A name that matches
    /// nothing is an error that lists what exists.
    pub fn select(
        &self,
        wanted: &[String],
        in_dify: &[AppSummary],
        repository: &AppRepository,
    ) -> Result<Vec<AppSummary>, SyncError> {
        let mut all: BTreeMap<String, AppSummary> = BTreeMap::new();
        for app in in_dify {
            all.insert(app.id.clone(), app.clone());
        }
        for entry in repository.index().values() {
            all.entry(entry.app_id.clone())
                .or_insert_with(|| AppSummary {
                    id: entry.app_id.clone(),
                    name: entry.name.clone(),
                    mode: entry.mode.clone(),
                });
        }
        if wanted.is_empty() {
            return Ok(all.into_values().collect());
        }
        let mut chosen = Vec::new();
        let mut unknown = Vec::new();
        for name in wanted {
            let matches: Vec<&AppSummary> = all
                .values()
                .filter(|app| app.id == *name || app.name.eq_ignore_ascii_case(name))
                .collect();
            match matches.is_empty() {
                true => unknown.push(name.clone()),
                false => chosen.extend(matches.into_iter().cloned()),
            }
        }
        if !unknown.is_empty() {
            let known: Vec<&str> = all.values().map(|a| a.name.as_str()).take(30).collect();
            return Err(SyncError::Input(format!(
                "no app is called {}; the apps are: {}",
                unknown.join(", "),
                known.join(", ")
            )));
        }
        chosen.sort_by(|a, b| a.id.cmp(&b.id));
        chosen.dedup_by(|a, b| a.id == b.id);
        Ok(chosen)
    }

    /// [`Self::dify_side`], except that Dify refusing to export this one app (400 or 404; a
    /// workflow without a draft: 400 before 1.16, 500 from 1.16; an app just deleted) is its
    /// message, not the run's error.
    pub async fn dify_side_or_refusal(
        &self,
        app: &AppSummary,
        in_dify: &[AppSummary],
        version: crate::console::apps::Version,
    ) -> Result<Result<Option<Exported>, String>, SyncError> {
        match self.dify_side(app, in_dify, version).await {
            Ok(side) => Ok(Ok(side)),
            Err(SyncError::Console(ConsoleError::Refused {
                status: status @ (400 | 404 | 500),
                message,
                ..
            })) => Ok(Err(export_refusal(status, &message))),
            Err(error) => Err(error),
        }
    }

    /// Dify's export of `app` as Git keeps it (secrets replaced, [`Exported`]), `None` when
    /// Dify no longer has the app.
    pub async fn dify_side(
        &self,
        app: &AppSummary,
        in_dify: &[AppSummary],
        version: crate::console::apps::Version,
    ) -> Result<Option<Exported>, SyncError> {
        if !in_dify.iter().any(|a| a.id == app.id) {
            return Ok(None);
        }
        Ok(Some(self.exported(&app.id, &app.name, version).await?))
    }

    /// Dify's export of one app as Git keeps it: in the environment's neutral form, secrets
    /// replaced.
    pub async fn exported(
        &self,
        app_id: &str,
        name: &str,
        version: crate::console::apps::Version,
    ) -> Result<Exported, SyncError> {
        let text = self.console.export_dsl(app_id, version).await?;
        let Some(promotion) = self.promotion() else {
            return Ok(Exported::from_dify(name, &text)?);
        };
        let mut dsl = dsl::parse(name, &text)?;
        // Dify exports the knowledge bases of a workflow encrypted; its graph has them plain.
        let raw = match remap::has_encrypted_datasets(&dsl) {
            true => remap::dataset_ids(&self.console.workflow_graph(app_id, version).await?),
            false => BTreeMap::new(),
        };
        let empty = BTreeMap::new();
        let git_values = promotion.git_values.get(app_id).unwrap_or(&empty);
        let notes = remap::to_git(
            &mut dsl,
            &promotion.environment,
            &promotion.catalog,
            &raw,
            git_values,
        );
        let neutral = serde_yaml::to_string(&dsl).map_err(|e| DslError::NotYaml {
            app: name.to_string(),
            why: e.to_string(),
        })?;
        let mut exported = Exported::from_dify(name, &neutral)?;
        exported.notes = notes;
        Ok(exported)
    }

    /// Why an app with secrets may not go to Git (`secrets_in_git: refuse`); `None` when it
    /// may.
    pub fn refuses(&self, app: &AppSummary, exported: &Exported) -> Option<String> {
        let refused =
            self.settings.secrets_in_git == SecretsInGit::Refuse && !exported.secrets.is_empty();
        refused.then(|| {
            DslError::SecretsRefused {
                app: app.name.clone(),
                places: exported.places(),
            }
            .to_string()
        })
    }
}

/// What to tell a user whose app Dify would not export: a workflow nobody has opened has no
/// draft (Dify says "Missing draft workflow configuration", or answers 500 from 1.16).
fn export_refusal(status: u16, message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    match (status, lower.contains("draft")) {
        (_, true) => format!(
            "Dify cannot export it: it has no draft yet ({message}). Open it once in Dify's editor, which saves a draft, and run again"
        ),
        (500, false) => format!(
            "Dify cannot export it: it answered 500 ({message}), as Dify 1.16 does for a workflow without a draft. If nobody has opened it yet, open it once in Dify's editor, which saves a draft, and run again"
        ),
        _ => format!("Dify cannot export it: {message}"),
    }
}

/// The Git file of `app` at the head: path, content and hash.
pub fn git_side(
    repository: &AppRepository,
    app: &AppSummary,
) -> Result<Option<(String, String, String)>, SyncError> {
    let Some(path) = repository.path_of(&app.id) else {
        return Ok(None);
    };
    let Some(bytes) = tokio::task::block_in_place(|| repository.read(path))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // A file someone broke by hand is a change in Git like any other: its hash is that of
    // its text. Import then reports Dify's refusal, and export never overwrites it.
    let hash = match dsl::parse(path, &text) {
        Ok(parsed) => dsl::content_hash(&parsed),
        Err(_) => dsl::text_hash(&text),
    };
    Ok(Some((path.to_string(), text, hash)))
}

/// An app that changed on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub app: String,
    pub app_id: String,
    pub path: String,
    /// Where Dify's version was pushed.
    pub branch: String,
    /// Git's file → Dify's version, normalized.
    pub diff: String,
}

/// Where an app stands ([`classify`]), with one more fact: a conflict whose branch was
/// merged into the synced branch (so Git has seen that version of Dify's) is a change in
/// Git. Merging the conflict branch is how a conflict is resolved: keep Dify's version, or
/// Git's (`git merge -s ours`), or a mix, and the next import brings the result to Dify.
pub fn app_state(
    repository: &AppRepository,
    state: &SyncState,
    app_id: &str,
    dify: Option<&str>,
    git: Option<&str>,
) -> AppState {
    let classified = classify(dify, git, state.apps.get(app_id));
    let merged = || {
        state
            .conflicts
            .get(app_id)
            .is_some_and(|c| Some(c.dify_hash.as_str()) == dify && repository.has_merged(&c.commit))
    };
    match classified {
        AppState::Conflict if merged() && git.is_none() => AppState::RemovedInGit,
        AppState::Conflict if merged() => AppState::ChangedInGit,
        other => other,
    }
}

/// Dify's side of a conflict: its export and that export's hash.
pub struct DifyVersion<'a> {
    pub text: &'a str,
    pub hash: &'a str,
}

/// Pushes Dify's version of an app that changed on both sides to a branch of its own,
/// `dify-sync/conflict/<slug>-<timestamp>`, on top of the branch's head; nothing else moves.
/// A conflict already pushed with this same Dify version is reported with its branch again.
pub fn push_conflict(
    repository: &AppRepository,
    state: &mut SyncState,
    app: &AppSummary,
    path: &str,
    git_text: Option<&str>,
    dify: DifyVersion<'_>,
) -> Result<Conflict, SyncError> {
    let dify_text = dify.text;
    let known = state
        .conflicts
        .get(&app.id)
        .filter(|c| c.dify_hash == dify.hash)
        .map(|c| c.branch.clone());
    let branch = match known {
        Some(branch) => branch,
        None => {
            let slug = path
                .rsplit('/')
                .next()
                .unwrap_or("app")
                .trim_end_matches(".yml");
            let name = format!("dify-sync/conflict/{slug}-{}", timestamp());
            let change = [FileChange {
                path: path.to_string(),
                content: Some(dify_text.as_bytes().to_vec()),
            }];
            let message = format!(
                "Dify's version of {} (conflict with {})\n\nBoth Dify and Git changed this app since the last sync.",
                app.name,
                repository.branch_name()
            );
            // A branch of that name from the same second (another version): the next free
            // name, `-2`, `-3`, … .
            let mut attempt = 1;
            let (branch, commit) = loop {
                let branch = match attempt {
                    1 => name.clone(),
                    n => format!("{name}-{n}"),
                };
                let pushed = tokio::task::block_in_place(|| {
                    repository.push_branch(&branch, &change, &message, &author())
                });
                match pushed {
                    Ok(commit) => break (branch, commit),
                    Err(GitError::Rejected(_)) if attempt < 5 => attempt += 1,
                    Err(error) => return Err(error.into()),
                }
            };
            state.conflicts.insert(
                app.id.clone(),
                ConflictBranch {
                    branch: branch.clone(),
                    commit,
                    dify_hash: dify.hash.to_string(),
                },
            );
            branch
        }
    };
    let diff = match git_text {
        Some(git_text) => normalized_diff(
            &format!("git:{path}"),
            git_text,
            &format!("dify:{}", app.name),
            dify_text,
        ),
        None => {
            format!("{path} was deleted in Git, and the app changed in Dify since the last sync\n")
        }
    };
    Ok(Conflict {
        app: app.name.clone(),
        app_id: app.id.clone(),
        path: path.to_string(),
        branch,
        diff,
    })
}

/// `- item` lines, for commit messages.
pub fn bullets(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("- {item}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits a comma- or line-separated list of app names.
pub fn app_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A unified diff of two DSLs in their normalized form (what a reviewer cares about).
pub fn normalized_diff(old_label: &str, old: &str, new_label: &str, new: &str) -> String {
    let render = |text: &str| -> String {
        match dsl::parse("", text) {
            Ok(value) => serde_yaml::to_string(&dsl::normalize(value)).unwrap_or_default(),
            Err(_) => text.to_string(),
        }
    };
    let (old, new) = (render(old), render(new));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

/// `YYYYMMDDTHHMMSSZ` of now (for branch names).
pub fn timestamp() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The JSON of a report, for the tool's `json` message.
pub fn to_json<T: serde::Serialize>(report: &T) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_right() {
        let stamp = timestamp();
        assert_eq!(stamp.len(), 16);
        assert!(stamp.starts_with("20") && stamp.ends_with('Z'));
    }

    #[test]
    fn diffs_ignore_the_canvas() {
        let a = "workflow:\n  graph:\n    nodes:\n    - id: n\n      position: {x: 1}\n      data: {title: A}\n";
        let b = "workflow:\n  graph:\n    nodes:\n    - id: n\n      position: {x: 5}\n      data: {title: B}\n";
        let diff = normalized_diff("git", a, "dify", b);
        assert!(
            diff.contains("-        title: A") && diff.contains("+        title: B"),
            "{diff}"
        );
        assert!(!diff.contains("position"), "{diff}");
    }

    #[test]
    fn a_workflow_without_a_draft_is_named_with_the_fix_on_every_version() {
        // 1.13: 400 "Missing draft workflow configuration"; 1.16: 500.
        for (status, message) in [
            (400, "Missing draft workflow configuration"),
            (500, "Internal Server Error"),
        ] {
            let text = export_refusal(status, message);
            assert!(text.contains("it once in Dify's editor"), "{text}");
        }
        assert_eq!(
            export_refusal(404, "App not found."),
            "Dify cannot export it: App not found."
        );
    }

    #[test]
    fn app_lists_split_on_commas_and_lines() {
        assert_eq!(app_list(" a, b\nc ,, "), ["a", "b", "c"]);
    }
}

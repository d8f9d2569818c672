//! Whole-history property: whatever edits happen in Dify and in Git, in whatever order with
//! exports and imports between them, no change is lost. An import never overwrites or
//! deletes a Dify version that Git has not seen (it is in Dify still, or on some branch), and
//! an export never rewrites the branch (its old head stays an ancestor). The target deletes
//! both ways, and the deleting imports name the app whatever its state.

use std::sync::Arc;

use crate::support::fake_console::{FakeConsole, EMAIL, PASSWORD};
use crate::support::git_servers::{git, TestRepo};
use app_git_sync::console::apps::Version;
use app_git_sync::console::sign_in::SignIn;
use app_git_sync::console::Console;
use app_git_sync::settings::{Deletions, Settings};
use app_git_sync::state::StateStore;
use app_git_sync::sync::export::{export, ExportOptions};
use app_git_sync::sync::import::{import, ImportOptions};
use app_git_sync::sync::{SyncContext, SyncError};
use git_remote::{FetchSettings, GitClient, GitCredentials, RepoCache};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    EditInDify,
    EditInGit,
    RemoveInGit,
    Export,
    Import,
    /// An import that names the app in `delete_apps`.
    ImportDeleting,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::EditInDify),
        Just(Step::EditInGit),
        Just(Step::RemoveInGit),
        Just(Step::Export),
        Just(Step::Import),
        Just(Step::ImportDeleting),
    ]
}

fn context(dir: &std::path::Path, console: &FakeConsole, repo: &TestRepo) -> SyncContext {
    let sign_in = SignIn::Password {
        email: EMAIL.into(),
        password: PASSWORD.into(),
    };
    let settings = Settings {
        console_url: console.url.clone(),
        sign_in: sign_in.clone(),
        repository_url: repo.bare.to_str().unwrap().to_string(),
        branch: "main".into(),
        directory: String::new(),
        environment: String::new(),
        secrets_in_git: Default::default(),
        deletions: Deletions::RemoveFilesAndApps,
        git: GitCredentials::default(),
    };
    let git = GitClient::new(
        RepoCache::new(dir.join("cache"), u64::MAX),
        FetchSettings {
            allow_local: true,
            ..app_git_sync::fetch_settings()
        },
    );
    SyncContext::new(
        settings,
        Arc::new(Console::new(&console.url, sign_in).unwrap()),
        Arc::new(git),
        StateStore::Files(dir.join("state")),
    )
}

/// The End node's title in Dify now; `None` once the app is deleted.
fn dify_title(console: &FakeConsole) -> Option<String> {
    let state = console.state();
    let app = state.apps.values().find(|a| a.name == "Flow")?;
    Some(
        app.graph["nodes"][1]["data"]["title"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// Whether some commit of some branch holds this title.
fn in_git(repo: &TestRepo, title: &str) -> bool {
    git(&repo.bare, &["log", "--all", "-p", "--format=%H"]).contains(&format!("title: {title}\n"))
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let console = FakeConsole::start("1.13.2");
    console.add_app("Flow", "workflow", Vec::new());
    let repo = TestRepo::create(dir.path(), "apps", &[("README.md", b"# apps\n")]);
    let ctx = context(dir.path(), &console, &repo);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::EditInDify if dify_title(&console).is_some() => {
                console.retitle("Flow", &format!("dify-{n}"))
            }
            Step::EditInDify => {}
            Step::EditInGit | Step::RemoveInGit => {
                git(&repo.work, &["fetch", "-q", "origin"]);
                git(&repo.work, &["reset", "-q", "--hard", "origin/main"]);
                let files = git(&repo.work, &["ls-files", "apps"]);
                let Some(file) = files.lines().next() else {
                    continue;
                };
                if let Step::RemoveInGit = step {
                    repo.commit(&[], &[file], &format!("remove {n}"));
                    continue;
                }
                let text = std::fs::read_to_string(repo.work.join(file)).unwrap();
                let edited: String = text
                    .lines()
                    .map(|line| match line.trim_start().strip_prefix("title: ") {
                        Some(title) if title != "Start" => line.replace(title, &format!("git-{n}")),
                        _ => line.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n";
                repo.commit(&[(file, edited.as_bytes())], &[], &format!("edit {n}"));
            }
            Step::Export => {
                let before = git(&repo.bare, &["rev-parse", "main"]);
                let options = ExportOptions {
                    apps: Vec::new(),
                    version: Version::Draft,
                    message: String::new(),
                };
                let report = runtime.block_on(export(&ctx, &options)).unwrap();
                let after = git(&repo.bare, &["rev-parse", "main"]);
                git(
                    &repo.bare,
                    &["merge-base", "--is-ancestor", &before, &after],
                );
                if report.conflicts.is_empty() && report.changed_in_git.is_empty() {
                    if let Some(title) = dify_title(&console) {
                        prop_assert!(in_git(&repo, &title), "{steps:?}");
                    }
                }
            }
            Step::Import | Step::ImportDeleting => {
                let Some(unseen) = dify_title(&console) else {
                    continue;
                };
                let options = ImportOptions {
                    delete_apps: match step {
                        Step::ImportDeleting => vec!["Flow".to_string()],
                        _ => Vec::new(),
                    },
                    ..ImportOptions::default()
                };
                let described = match runtime.block_on(import(&ctx, &options)) {
                    Ok(report) => report.describe(),
                    // Naming an app whose file is there is refused before anything changes.
                    Err(SyncError::Input(refusal)) => refusal,
                    Err(error) => panic!("{error}"),
                };
                prop_assert!(
                    dify_title(&console).as_ref() == Some(&unseen) || in_git(&repo, &unseen),
                    "step {n} lost Dify's {unseen:?}: {steps:?}\n{described}"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_of_edits_and_syncs_loses_a_change(steps in prop::collection::vec(step(), 1..10)) {
        run(&steps)?;
    }
}

//! The same sync from a terminal or CI: credentials from `APP_GIT_SYNC_*`, state in a file,
//! exit codes a pipeline can branch on (0 done, 1 error, 2 conflict).

use std::process::{Command, Output};

use crate::support::fake_console::{FakeConsole, EMAIL, PASSWORD};
use crate::support::git_servers::{git, TestRepo};
use crate::support::plugin_under_test::BINARY;

struct Cli {
    dir: tempfile::TempDir,
    console: FakeConsole,
    repo: TestRepo,
}

impl Cli {
    fn start() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let console = FakeConsole::start("1.13.2");
        console.add_app("Report Workflow", "workflow", Vec::new());
        let repo = TestRepo::create(dir.path(), "apps", &[("README.md", b"# apps\n")]);
        Cli { dir, console, repo }
    }

    /// Exports every app; the file of an app by its slug.
    fn export_all(&self) -> impl Fn(&str) -> String {
        assert_eq!(self.run(&["export"]).status.code(), Some(0));
        git(&self.repo.work, &["pull", "-q", "origin", "main"]);
        let files = git(&self.repo.work, &["ls-files", "apps"]);
        move |slug: &str| {
            files
                .lines()
                .find(|f| f.contains(slug))
                .unwrap()
                .to_string()
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(BINARY)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", self.dir.path())
            .env("APP_GIT_SYNC_CONSOLE_URL", &self.console.url)
            .env("APP_GIT_SYNC_EMAIL", EMAIL)
            .env("APP_GIT_SYNC_PASSWORD", PASSWORD)
            .env("APP_GIT_SYNC_REPOSITORY_URL", &self.repo.bare)
            .output()
            .unwrap()
    }
}

#[test]
fn the_file_of_an_app_deleted_in_dify_goes_only_when_asked_and_unchanged_in_git() {
    let cli = Cli::start();
    cli.console.add_app("Second Flow", "workflow", Vec::new());
    let file_of = cli.export_all();
    let (report, second) = (file_of("report-workflow"), file_of("second-flow"));
    // Both deleted in Dify; the second's file is edited in Git meanwhile.
    cli.console.state().apps.clear();
    let edited = std::fs::read_to_string(cli.repo.work.join(&second))
        .unwrap()
        .replace("title: End", "title: Edited");
    cli.repo
        .commit(&[(second.as_str(), edited.as_bytes())], &[], "edit");
    let kept = cli.run(&["export"]);
    assert!(text(&kept).contains("Nothing to commit"), "{}", text(&kept));
    let removal = [("APP_GIT_SYNC_DELETIONS", "remove_files")];
    let removed = cli.run_with(&["export"], &removal);
    assert_eq!(removed.status.code(), Some(0), "{}", text(&removed));
    assert!(
        text(&removed).contains(&format!(
            "Removed the files of apps deleted in Dify: {report}"
        )),
        "{}",
        text(&removed)
    );
    assert!(
        text(&removed).contains("changed in Git since the last sync: the file stays"),
        "{}",
        text(&removed)
    );
    git(&cli.repo.work, &["pull", "-q", "origin", "main"]);
    let left = git(&cli.repo.work, &["ls-files", "apps"]);
    assert!(!left.contains(&report) && left.contains(&second), "{left}");
    let index = std::fs::read_to_string(cli.repo.work.join(".dify-sync/index.json")).unwrap();
    assert!(!index.contains("Report Workflow"), "{index}");
    let subject = git(&cli.repo.work, &["log", "-1", "--format=%s"]);
    assert_eq!(subject, "Remove the files of 1 app(s) deleted in Dify");
    // A value that is no choice is named.
    let wrong = cli.run_with(&["export"], &[("APP_GIT_SYNC_DELETIONS", "all")]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong).contains("APP_GIT_SYNC_DELETIONS"),
        "{}",
        text(&wrong)
    );
}

#[test]
fn a_file_removed_in_git_deletes_its_app_only_when_allowed_named_and_unchanged_in_dify() {
    let cli = Cli::start();
    cli.console.add_app("Second Flow", "workflow", Vec::new());
    cli.console.add_app("Third Flow", "workflow", Vec::new());
    let file_of = cli.export_all();
    let (report, second) = (file_of("report-workflow"), file_of("second-flow"));
    let last_version = std::fs::read_to_string(cli.repo.work.join(&report)).unwrap();
    // Both files removed in Git (their index entries left, as `git rm` leaves them); the
    // second app is edited in Dify meanwhile.
    cli.repo.commit(&[], &[&report, &second], "Retire two apps");
    cli.console.retitle("Second Flow", "Edited in Dify");
    let apps = |cli: &Cli| -> Vec<String> {
        let mut names: Vec<String> = cli
            .console
            .state()
            .apps
            .values()
            .map(|a| a.name.clone())
            .collect();
        names.sort();
        names
    };
    let all = ["Report Workflow", "Second Flow", "Third Flow"];

    // By default nothing is deleted, and asking for it is refused before anything changes.
    let kept = cli.run(&["import"]);
    assert_eq!(kept.status.code(), Some(0), "{}", text(&kept));
    assert!(
        text(&kept).contains("Report Workflow: its file apps/report-workflow")
            && text(&kept).contains("stays in Dify, since this target deletes no apps"),
        "{}",
        text(&kept)
    );
    let refused = cli.run(&["import", "--delete-apps", "Report Workflow"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("this target deletes no apps in Dify"),
        "{}",
        text(&refused)
    );
    assert_eq!(apps(&cli), all);

    let allowed = [("APP_GIT_SYNC_DELETIONS", "remove_files_and_apps")];
    // Only an app whose file was removed can be named.
    let wrong = cli.run_with(&["import", "--delete-apps", "Third Flow"], &allowed);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        text(&wrong).contains(
            "\"Third Flow\", which is not an app of this Dify whose file was removed in Git"
        ) && text(&wrong).contains("they are: Report Workflow"),
        "{}",
        text(&wrong)
    );
    // A long or odd name is shown cut short, escaped.
    let odd = format!("{}\u{1b}[2J", "x".repeat(200));
    let wrong = cli.run_with(&["import", "--delete-apps", &odd], &allowed);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        !text(&wrong).contains(&"x".repeat(81)) && !text(&wrong).contains('\u{1b}'),
        "{}",
        text(&wrong)
    );
    // The dry run lists the deletion and how to confirm it; the app edited in Dify stays.
    let dry = cli.run_with(&["import", "--dry-run"], &allowed);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let dry = text(&dry);
    assert!(
        dry.contains("- would delete it in Dify once named in delete_apps, with its logs, conversations and API keys")
            && dry.contains(&format!("Report Workflow from {report}")),
        "{dry}"
    );
    assert!(
        dry.contains("--delete-apps 'Report Workflow'")
            && dry.contains("Second Flow")
            && dry.contains("changed in Dify since the last sync, so it is not deleted"),
        "{dry}"
    );
    // Without the name, an import deletes nothing either.
    let unnamed = cli.run_with(&["import"], &allowed);
    assert!(
        text(&unnamed).contains("deletes it only when it names the app in delete_apps"),
        "{}",
        text(&unnamed)
    );
    assert_eq!(apps(&cli), all);
    assert!(!cli
        .console
        .state()
        .requests
        .iter()
        .any(|r| r.method == "DELETE"));

    // Named, the app edited in Dify is still not deleted, and the run says it failed.
    let edited = cli.run_with(&["import", "--delete-apps", "Second Flow"], &allowed);
    assert_eq!(edited.status.code(), Some(2), "{}", text(&edited));
    assert!(
        text(&edited).contains("Failed: Second Flow"),
        "{}",
        text(&edited)
    );
    assert_eq!(apps(&cli), all);

    // Dify refusing the deletion (an account that may not edit) records nothing.
    cli.console.state().can_edit = false;
    let forbidden = cli.run_with(&["import", "--delete-apps", "report workflow"], &allowed);
    assert_eq!(forbidden.status.code(), Some(2), "{}", text(&forbidden));
    assert!(
        text(&forbidden).contains("not deleted in Dify") && text(&forbidden).contains("403"),
        "{}",
        text(&forbidden)
    );
    assert_eq!(apps(&cli), all);
    cli.console.state().can_edit = true;

    let report_id = cli.console.state().app("Report Workflow").id.clone();
    let deleted = cli.run_with(&["import", "--delete-apps", "report workflow"], &allowed);
    assert_eq!(deleted.status.code(), Some(0), "{}", text(&deleted));
    let deleted = text(&deleted);
    assert!(
        deleted.contains(&format!(
            "Deleted in Dify: Report Workflow ({report_id}), whose file {report} was removed in Git"
        )),
        "{deleted}"
    );
    assert_eq!(apps(&cli), ["Second Flow", "Third Flow"]);
    // Its last version is one command away, and its index entry is gone.
    let show = deleted
        .split("git show ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    git(&cli.repo.work, &["pull", "-q", "origin", "main"]);
    assert_eq!(
        git(&cli.repo.work, &["show", &show]),
        last_version.trim_end()
    );
    let index = std::fs::read_to_string(cli.repo.work.join(".dify-sync/index.json")).unwrap();
    assert!(
        !index.contains("Report Workflow") && index.contains("Second Flow"),
        "{index}"
    );
    let subject = git(&cli.repo.work, &["log", "-1", "--format=%s"]);
    assert_eq!(subject, "Forget the apps deleted in Dify");
    // Done: the next run has nothing left to delete.
    let again = cli.run_with(&["import", "--dry-run"], &allowed);
    assert!(
        !text(&again).contains("Report Workflow"),
        "{}",
        text(&again)
    );
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn export_status_and_a_conflict_give_exit_codes_ci_can_use() {
    let cli = Cli::start();
    let export = cli.run(&["export"]);
    assert_eq!(export.status.code(), Some(0), "{}", text(&export));
    assert!(text(&export).contains("Exported 1 app(s)"));
    let status = cli.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["apps"][0]["state"], "in_sync");

    // Both sides change: status and export exit 2, and Git's branch keeps its edit.
    git(&cli.repo.work, &["pull", "-q", "origin", "main"]);
    let file = std::fs::read_dir(cli.repo.work.join("apps"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("title: End", "title: Git");
    let relative = file
        .strip_prefix(&cli.repo.work)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let head = cli
        .repo
        .commit(&[(relative.as_str(), edited.as_bytes())], &[], "edit");
    cli.console.retitle("Report Workflow", "Dify");
    assert_eq!(cli.run(&["status"]).status.code(), Some(2));
    let export = cli.run(&["export"]);
    assert_eq!(export.status.code(), Some(2), "{}", text(&export));
    assert!(
        text(&export).contains("dify-sync/conflict/"),
        "{}",
        text(&export)
    );
    assert_eq!(git(&cli.repo.bare, &["rev-parse", "main"]), head);
    let diff = cli.run(&["diff", "Report Workflow"]);
    assert!(
        text(&diff).contains("+        title: Dify"),
        "{}",
        text(&diff)
    );
}

#[test]
fn missing_settings_are_named_by_variable_and_exit_1() {
    let cli = Cli::start();
    let output = Command::new(BINARY)
        .args(["status"])
        .env_clear()
        .env("HOME", cli.dir.path())
        .env("APP_GIT_SYNC_PASSWORD", "pw-never-shown")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output);
    assert!(
        shown.contains("APP_GIT_SYNC_EMAIL") && shown.contains("APP_GIT_SYNC_REPOSITORY_URL"),
        "{shown}"
    );
    assert!(!shown.contains("pw-never-shown"), "{shown}");
}

/// A secret can come from a file (`…_FILE`), out of the process list; a file that cannot be
/// read is named, not taken for an empty setting.
#[test]
fn a_setting_file_that_cannot_be_read_is_named() {
    let cli = Cli::start();
    let missing = cli.dir.path().join("no-such-password");
    let output = Command::new(BINARY)
        .args(["status"])
        .env_clear()
        .env("HOME", cli.dir.path())
        .env("APP_GIT_SYNC_PASSWORD_FILE", &missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output);
    assert!(
        shown.contains("APP_GIT_SYNC_PASSWORD_FILE names") && shown.contains("no-such-password"),
        "{shown}"
    );
}

#[test]
fn a_target_names_an_environment_file_and_nothing_else() {
    let cli = Cli::start();
    for (target, says) in [
        (
            "../prod",
            "--target must be the name of a file under .dify-sync/environments/",
        ),
        (
            "production",
            "has no .dify-sync/environments/production.yaml",
        ),
    ] {
        let output = cli.run(&["import", "--dry-run", "--target", target]);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        assert!(text(&output).contains(says), "{}", text(&output));
    }
    // With the file, the same dry run goes through that environment and changes nothing.
    cli.repo.commit(
        &[(".dify-sync/environments/production.yaml", b"{}\n")],
        &[],
        "production",
    );
    let output = cli.run(&["export", "--target", "production"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("Exported 1 app(s)"),
        "{}",
        text(&output)
    );
    git(&cli.repo.work, &["pull", "-q", "origin", "main"]);
    let index = std::fs::read_to_string(
        cli.repo
            .work
            .join(".dify-sync/environments/production.index.json"),
    )
    .unwrap();
    assert!(index.contains("Report Workflow"), "{index}");
}

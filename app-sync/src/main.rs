use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

mod review_cli;

use app_git_sync::console::apps::Version;
use app_git_sync::console::sign_in::SignIn;
use app_git_sync::console::Console;
use app_git_sync::handler::AppSyncHandler;
use app_git_sync::review::DiffFormat;
use app_git_sync::settings::Settings;
use app_git_sync::state::StateStore;
use app_git_sync::sync::export::ExportOptions;
use app_git_sync::sync::import::ImportOptions;
use app_git_sync::sync::{self, app_list, SyncContext};
use app_git_sync::{fetch_settings, GIT_ENV};
use dify_plugin::commands::{self, CheckArgs, PackageArgs};
use git_remote::{FetchSettings, GitClient, RepoCache};

/// Version Dify apps and workflows in Git. Credentials come from APP_GIT_SYNC_* variables
/// (APP_GIT_SYNC_CONSOLE_URL, _SIGN_IN, _EMAIL, _PASSWORD, _REPOSITORY_URL, _BRANCH,
/// _GIT_ACCESS_TOKEN, …; a _FILE suffix reads a value from a file).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Dify plugin daemon (what the daemon runs).
    Serve,
    /// Export apps from Dify into one commit pushed to the branch (exit 2 on a conflict).
    Export(ExportArgs),
    /// Import the app files changed in Git into Dify (exit 2 on a conflict).
    Import(ImportArgs),
    /// Show, per app, whether Dify and Git are in sync (exit 2 on a conflict).
    Status(CommonArgs),
    /// Show what differs between Git's file and Dify's draft of one app; or, with --base,
    /// what changed in a checkout's app files since a commit or branch (offline, for a
    /// pull request).
    Diff {
        /// The app's name or id (not with --base).
        #[arg(required_unless_present = "base", conflicts_with = "base")]
        app: Option<String>,
        /// The commit to compare with (default: the branch head).
        #[arg(long, default_value = "")]
        commit: String,
        /// Compare the app files of the checkout at --dir with this commit or branch; needs
        /// no Dify.
        #[arg(long, value_name = "COMMIT")]
        base: Option<String>,
        /// The checkout (with --base).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// unified (the YAML; the default with an app), semantic (node by node; the default
        /// with --base) or markdown (node by node, for a pull-request comment).
        #[arg(long, value_enum)]
        format: Option<DiffFormat>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Check app files offline: broken variable references, unreachable nodes, missing
    /// models or fields, secrets, a DSL newer than Dify 1.16 (exit 1 on an error).
    Lint {
        /// App files, or folders to search for apps/*.yml (default: the current folder).
        paths: Vec<PathBuf>,
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The Git log of one app's file and its published versions in Dify.
    History {
        /// The app's name or id.
        app: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Build the installable .difypkg (dist/app_git_sync-<version>.difypkg).
    Package(PackageArgs),
    /// Validate manifest.yaml, the provider and the tool YAML as strictly as the daemon.
    Check(CheckArgs),
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Apps by name or id, separated by commas (default: all).
    #[arg(long, default_value = "")]
    apps: String,
    /// Where the sync state is kept (default: ~/.local/state/app-git-sync).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The environment this Dify is: .dify-sync/environments/NAME.yaml maps the apps'
    /// references for it (default: APP_GIT_SYNC_ENVIRONMENT, else none).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Export the latest published version instead of the draft.
    #[arg(long)]
    published: bool,
    /// The first line of the commit message.
    #[arg(long, default_value = "")]
    message: String,
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Create apps Dify cannot overwrite (or does not have) as new apps.
    #[arg(long)]
    create_new: bool,
    /// Confirm imports of a DSL newer than the server's.
    #[arg(long)]
    confirm_newer_dsl: bool,
    /// Publish each imported workflow or chatflow.
    #[arg(long)]
    publish: bool,
    /// Say what an import would overwrite, create, delete or refuse, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Delete in Dify these apps (names or ids, comma-separated), whose files were removed in
    /// Git: only with deletions remove_files_and_apps, as a dry run lists them.
    #[arg(long, value_name = "APPS", default_value = "")]
    delete_apps: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_process("APP_GIT_SYNC_LOG");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let git = GitClient::new(RepoCache::from_env(GIT_ENV), fetch_settings());
            // The plugin's directory lasts as long as its installation.
            let webhook_state = GIT_ENV
                .get("STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("state"))
                .join("webhooks");
            let handler = AppSyncHandler::new(git, webhook_state);
            let code = commands::serve(Arc::new(handler));
            // Exit at once: a blocking read of stdin must not hold the process open.
            std::process::exit(code);
        }
        Command::Package(args) => commands::package(&args),
        Command::Check(args) => commands::check(&args),
        Command::Lint {
            paths,
            deny_warnings,
            json,
        } => review_cli::lint(&paths, deny_warnings, json),
        Command::Diff {
            base: Some(base),
            dir,
            format,
            ..
        } => review_cli::diff_since(&dir, &base, format.unwrap_or(DiffFormat::Semantic)),
        command => commands::runtime().block_on(run(command)),
    }
}

async fn run(command: Command) -> ExitCode {
    let common = match &command {
        Command::Export(a) => a.common.clone(),
        Command::Import(a) => a.common.clone(),
        Command::Status(c)
        | Command::Diff { common: c, .. }
        | Command::History { common: c, .. } => c.clone(),
        _ => unreachable!("handled in main"),
    };
    let ctx = match context(&common) {
        Ok(ctx) => ctx,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = match sign_in_by_device(ctx).await {
        Ok(ctx) => ctx,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let apps = app_list(&common.apps);
    let outcome = match command {
        Command::Export(args) => {
            let options = ExportOptions {
                apps,
                version: match args.published {
                    true => Version::Published,
                    false => Version::Draft,
                },
                message: args.message,
            };
            sync::export::export(&ctx, &options)
                .await
                .map(|r| (r.describe(), sync::to_json(&r), !r.conflicts.is_empty()))
        }
        Command::Import(args) => {
            let options = ImportOptions {
                apps,
                create_new: args.create_new,
                confirm_newer_dsl: args.confirm_newer_dsl,
                publish: args.publish,
                dry_run: args.dry_run,
                delete_apps: app_list(&args.delete_apps),
            };
            sync::import::import(&ctx, &options).await.map(|r| {
                let troubled = !r.conflicts.is_empty() || !r.failed.is_empty();
                (r.describe(), sync::to_json(&r), troubled)
            })
        }
        Command::Status(_) => sync::status::status(&ctx, &apps)
            .await
            .map(|r| (r.describe(), sync::to_json(&r), r.has_conflict())),
        Command::Diff {
            app,
            commit,
            format,
            ..
        } => {
            let (app, format) = (app.unwrap_or_default(), format.unwrap_or_default());
            sync::inspect::diff(&ctx, &app, &commit, format)
                .await
                .map(|r| (r.describe(), sync::to_json(&r), false))
        }
        Command::History { app, .. } => sync::inspect::history(&ctx, &app)
            .await
            .map(|r| (r.describe(), sync::to_json(&r), false)),
        _ => unreachable!("handled in main"),
    };
    if let Some(through) = ctx.console.signed_in_through().await {
        eprintln!("signed in through {through}");
    }
    match outcome {
        Ok((text, json, troubled)) => {
            match common.json {
                true => println!("{json}"),
                false => println!("{text}"),
            }
            match troubled {
                true => ExitCode::from(2),
                false => ExitCode::SUCCESS,
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// With the OpenAPI sign-in and no token: Dify's device flow. The code and URL go to stderr
/// for the person at the terminal; the token lives in this process only. Where the server has
/// no OpenAPI and e-mail and password were given, the console API is used instead.
async fn sign_in_by_device(mut ctx: SyncContext) -> Result<SyncContext, String> {
    let SignIn::OpenApi {
        token,
        workspace_id,
        fallback,
    } = &ctx.settings.sign_in
    else {
        return Ok(ctx);
    };
    if !token.is_empty()
        || (fallback.is_some()
            && !ctx
                .console
                .has_open_api()
                .await
                .map_err(|e| e.to_string())?)
    {
        return Ok(ctx);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let label = format!("app-git-sync on {}", host.trim());
    let token = ctx
        .console
        .device_login(&label, |prompt| {
            eprintln!(
                "To sign in to Dify, open {} and enter the code {} (valid for {} minutes). Waiting for approval…",
                prompt.verification_uri,
                prompt.user_code,
                prompt.expires_in.as_secs().div_ceil(60)
            )
        })
        .await
        .map_err(|e| e.to_string())?;
    let sign_in = SignIn::OpenApi {
        token,
        workspace_id: workspace_id.clone(),
        fallback: fallback.clone(),
    };
    ctx.console = Arc::new(Console::new(&ctx.settings.console_url, sign_in.clone())?);
    ctx.settings.sign_in = sign_in;
    Ok(ctx)
}

/// The settings from the environment, the console, a Git client caching clones under the
/// user's cache directory (local repositories allowed), and the state directory.
fn context(common: &CommonArgs) -> Result<SyncContext, String> {
    let mut settings = Settings::from_env().map_err(|problems| {
        let listed: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "APP_GIT_SYNC_{}: {}",
                    p.field.to_ascii_uppercase(),
                    p.message
                )
            })
            .collect();
        listed.join("\n       ")
    })?;
    if let Some(target) = &common.target {
        app_git_sync::environment::check_name(target).map_err(|m| format!("--target {m}"))?;
        settings.environment = target.clone();
    }
    let console = Arc::new(Console::new(
        &settings.console_url,
        settings.sign_in.clone(),
    )?);
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let cache = match GIT_ENV.get("CACHE_DIR") {
        Some(_) => RepoCache::from_env(GIT_ENV),
        None => RepoCache::with_env_bounds(home.join(".cache/app-git-sync/repos"), GIT_ENV),
    };
    let git = GitClient::new(
        cache,
        FetchSettings {
            allow_local: true,
            ..fetch_settings()
        },
    );
    let state_dir = common
        .state_dir
        .clone()
        .unwrap_or_else(|| home.join(".local/state/app-git-sync"));
    Ok(SyncContext::new(
        settings,
        console,
        Arc::new(git),
        StateStore::Files(state_dir),
    ))
}

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use dify_plugin::commands::{self, CheckArgs, PackageArgs};
use git_datasource::cli::crawl::{describe, CrawlCommand};
use git_datasource::cli::sync::{self, SyncCommand};
use git_datasource::cli::sync_all;
use git_datasource::handlers::PluginHandler;
use git_datasource::settings::Settings;
use git_datasource::GIT_ENV;
use git_remote::{FetchSettings, GitClient, RepoCache};

/// Turn a Git repository into a Dify knowledge base.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Dify plugin daemon: over stdin/stdout when INSTALL_METHOD=local (what the
    /// daemon sets, and the default), or dial its debug port when INSTALL_METHOD=remote.
    Serve,
    Crawl(CrawlCommand),
    Sync(SyncCommand),
    /// Build the installable .difypkg (dist/git_datasource-<version>.difypkg).
    Package(PackageArgs),
    /// Validate manifest.yaml, the provider and the datasource YAML as strictly as the daemon.
    Check(CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_process("GIT_DATASOURCE_LOG");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check(args) => commands::check(&args),
        Command::Package(args) => commands::package(&args),
        Command::Crawl(command) => crawl(&command),
        Command::Sync(command) => run_sync(&command),
        Command::Serve => {
            let git = GitClient::new(
                RepoCache::from_env(GIT_ENV),
                FetchSettings::from_env(GIT_ENV),
            );
            let handler = PluginHandler::new(git, Settings::from_env());
            let code = commands::serve(Arc::new(handler));
            // Exit at once: a blocking read of stdin must not hold the process open.
            std::process::exit(code);
        }
    }
}

fn crawl(command: &CrawlCommand) -> ExitCode {
    match commands::runtime().block_on(command.run()) {
        Ok(summary) => {
            let text = describe(&summary);
            if command.json {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_sync(command: &SyncCommand) -> ExitCode {
    match command.config() {
        Ok(None) => {}
        Ok(Some(config)) => {
            return match commands::runtime().block_on(sync_all::run(command, &config)) {
                Ok(code) => ExitCode::from(code),
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            };
        }
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    }
    match commands::runtime().block_on(command.run()) {
        Ok(report) => {
            print!("{}", sync::describe(&report));
            ExitCode::from(report.exit_code())
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

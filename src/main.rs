use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use git_datasource::aarch64_build;
use git_datasource::crawl_command::{describe, CrawlCommand};
use git_datasource::declaration::{find_plugin_dir, PluginDeclaration};
use git_datasource::git::{FetchSettings, GitClient, RepoCache};
use git_datasource::handlers::PluginHandler;
use git_datasource::package::ArchBinary;
use git_datasource::protocol::tcp::{self, RemoteTarget};
use git_datasource::protocol::{stdio, ServeSettings};
use git_datasource::sync_command::{self, SyncCommand};

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
    Package {
        /// Where to write the package.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The plugin directory (the one holding manifest.yaml).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The binary for this machine's architecture (default: this executable).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// An aarch64 (arm64) Linux binary built elsewhere, instead of building one here.
        #[arg(long, conflicts_with = "no_aarch64")]
        aarch64: Option<PathBuf>,
        /// Leave the aarch64 binary out: the package then runs on x86_64 Dify hosts only.
        #[arg(long)]
        no_aarch64: bool,
    },
    /// Validate manifest.yaml, the provider and the datasource YAML as strictly as the daemon.
    Check {
        /// The plugin directory (the one holding manifest.yaml).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // A panic's message may quote its input, secrets included: report where, never what.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("internal error: the plugin panicked at {at} (message withheld)");
    }));
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check { dir } => check(&dir),
        Command::Package {
            out,
            dir,
            binary,
            aarch64,
            no_aarch64,
        } => package(&dir, out.as_deref(), binary, aarch64, no_aarch64),
        Command::Crawl(command) => crawl(&command),
        Command::Sync(command) => sync(&command),
        Command::Serve => {
            // Exit at once: a blocking read of stdin must not hold the process open.
            let code = serve();
            std::process::exit(code);
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GIT_DATASOURCE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .compact()
        .init();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
}

fn crawl(command: &CrawlCommand) -> ExitCode {
    match runtime().block_on(command.run()) {
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

fn sync(command: &SyncCommand) -> ExitCode {
    match runtime().block_on(command.run()) {
        Ok(report) => {
            print!("{}", sync_command::describe(&report));
            ExitCode::from(report.exit_code())
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn package(
    dir: &Path,
    out: Option<&Path>,
    binary: Option<PathBuf>,
    aarch64: Option<PathBuf>,
    no_aarch64: bool,
) -> ExitCode {
    let native = match binary {
        Some(path) => path,
        None => {
            if cfg!(debug_assertions) {
                eprintln!("warning: packaging a debug build; use `cargo run --release -- package`");
            }
            std::env::current_exe().expect("the path of this executable")
        }
    };
    let arch = match std::env::consts::ARCH {
        "aarch64" => "aarch64",
        _ => "x86_64",
    };
    let mut binaries = vec![ArchBinary { arch, path: native }];
    let aarch64 = match (aarch64, no_aarch64) {
        (Some(path), _) => Some(path),
        (None, true) => None,
        (None, false) if arch == "aarch64" => None,
        (None, false) => {
            eprintln!("building the aarch64 binary ({})", aarch64_build::TARGET);
            match aarch64_build::find().and_then(|toolchain| aarch64_build::build(&toolchain, dir))
            {
                Ok(path) => Some(path),
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    if let Some(path) = aarch64 {
        binaries.retain(|b| b.arch != "aarch64");
        binaries.push(ArchBinary {
            arch: "aarch64",
            path,
        });
    }
    if binaries.len() == 1 {
        eprintln!(
            "warning: the package holds only the {arch} binary; Dify hosts of the other \
             architecture cannot start it"
        );
    }
    match git_datasource::package::build(dir, out, &binaries) {
        Ok(report) => {
            println!(
                "package     {} ({} bytes, {} unpacked)",
                report.path.display(),
                report.size,
                report.unpacked_size
            );
            println!("identifier  {}", report.identifier);
            for (name, size) in &report.binaries {
                println!("binary      {name} ({size} bytes)");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprint!("error: {error}");
            if !error.to_string().ends_with('\n') {
                eprintln!();
            }
            ExitCode::FAILURE
        }
    }
}

fn check(dir: &Path) -> ExitCode {
    match PluginDeclaration::load(dir) {
        Ok(plugin) => {
            println!(
                "{}/{} {}: manifest, provider and datasource declarations are valid",
                plugin.author(),
                plugin.name(),
                plugin.version()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprint!("{problems}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> i32 {
    let dir = find_plugin_dir();
    let plugin = match PluginDeclaration::load(&dir) {
        Ok(plugin) => plugin,
        Err(problems) => {
            eprint!("refusing to start: {problems}");
            return 1;
        }
    };
    let dotenv = tcp::read_dotenv(&dir.join(".env"));
    let var = |name: &str| {
        std::env::var(name).ok().or_else(|| {
            dotenv
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    };
    let settings = ServeSettings::from_vars(var);
    let method = var("INSTALL_METHOD").unwrap_or_else(|| "local".into());
    let runtime = runtime();
    let git = GitClient::new(RepoCache::from_env(), FetchSettings::from_env());
    let handler = Arc::new(PluginHandler::new(git));
    let result = runtime.block_on(async {
        match method.trim() {
            "local" | "" => stdio::serve(handler, &settings).await,
            "remote" => {
                let target = RemoteTarget::from_vars(var)?;
                tcp::serve(handler, &plugin, &target, &settings).await
            }
            other => Err(git_datasource::protocol::ServeError::Config(format!(
                "INSTALL_METHOD={other:?} is not supported; use local (stdio) or remote (debugging)"
            ))),
        }
    });
    match result {
        Ok(()) => 0,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("error: {error}");
            1
        }
    }
}

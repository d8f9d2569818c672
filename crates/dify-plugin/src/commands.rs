//! The commands every plugin binary offers besides its own: `serve` (what the daemon runs),
//! `package` and `check`, plus the process set-up they share.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::aarch64_build;
use crate::declaration::{find_plugin_dir, PluginDeclaration};
use crate::package::{self, ArchBinary};
use crate::protocol::tcp::{self, RemoteTarget};
use crate::protocol::{stdio, RequestHandler, ServeError, ServeSettings};

/// Build the installable .difypkg (dist/<name>-<version>.difypkg).
#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Where to write the package.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The plugin directory (the one holding manifest.yaml).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The binary for this machine's architecture (default: this executable).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// An aarch64 (arm64) Linux binary built elsewhere, instead of building one here.
    #[arg(long, conflicts_with = "no_aarch64")]
    pub aarch64: Option<PathBuf>,
    /// Leave the aarch64 binary out: the package then runs on x86_64 Dify hosts only.
    #[arg(long)]
    pub no_aarch64: bool,
    /// The Cargo binary to build for aarch64 (default: the plugin's name with `-` for `_`),
    /// from the nearest Cargo.toml at or above the plugin directory: one binary may serve
    /// several packages.
    #[arg(long)]
    pub bin: Option<String>,
}

/// The nearest directory at or above `dir` with a Cargo.toml (`dir` itself when none has).
fn crate_dir(dir: &std::path::Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    absolute
        .ancestors()
        .find(|d| d.join("Cargo.toml").is_file())
        .map_or_else(|| dir.to_path_buf(), PathBuf::from)
}

/// Validate manifest.yaml and the provider's YAML as strictly as the daemon.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The plugin directory (the one holding manifest.yaml).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// Logging to stderr (stdout belongs to the daemon), filtered by the variable `log_filter_var`
/// (default `info`), and a panic hook that never prints a panic's message: it may quote its
/// input, secrets included.
pub fn init_process(log_filter_var: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(log_filter_var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .compact()
        .init();
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("internal error: the plugin panicked at {at} (message withheld)");
    }));
}

/// The multi-threaded async runtime every command runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
}

/// Builds the `.difypkg`: `cargo run --release -- package`.
pub fn package(args: &PackageArgs) -> ExitCode {
    let dir = args.dir.as_path();
    let bin = match PluginDeclaration::load(dir) {
        Ok(plugin) => args.bin.clone().unwrap_or_else(|| plugin.binary_name()),
        Err(problems) => {
            eprint!("error: {problems}");
            return ExitCode::FAILURE;
        }
    };
    let native = match args.binary.clone() {
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
    let aarch64 = match (args.aarch64.clone(), args.no_aarch64) {
        (Some(path), _) => Some(path),
        (None, true) => None,
        (None, false) if arch == "aarch64" => None,
        (None, false) => {
            eprintln!("building the aarch64 binary ({})", aarch64_build::TARGET);
            match aarch64_build::find()
                .and_then(|toolchain| aarch64_build::build(&toolchain, &crate_dir(dir), &bin))
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
    match package::build(dir, args.out.as_deref(), &binaries) {
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

/// Validates the declarations as strictly as the daemon: the `check` command.
pub fn check(args: &CheckArgs) -> ExitCode {
    match PluginDeclaration::load(&args.dir) {
        Ok(plugin) => {
            println!(
                "{}/{} {}: manifest, provider and {} declarations{} are valid",
                plugin.author(),
                plugin.name(),
                plugin.version(),
                plugin.kind().noun(),
                match plugin.endpoints_json() {
                    Some(_) => " and the endpoint group",
                    None => "",
                }
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprint!("{problems}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the daemon until it goes away: over stdin/stdout when `INSTALL_METHOD=local` (what
/// the daemon sets, and the default), or by dialling its debug port when it is `remote`.
/// Returns the process exit code.
pub fn serve(handler: Arc<dyn RequestHandler>) -> i32 {
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
    let result = runtime.block_on(async {
        match method.trim() {
            "local" | "" => stdio::serve(handler, &settings).await,
            "remote" => {
                let target = RemoteTarget::from_vars(var)?;
                tcp::serve(handler, &plugin, &target, &settings).await
            }
            other => Err(ServeError::Config(format!(
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

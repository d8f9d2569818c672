//! The real Dify API of `../shared/dify`, started on loopback for one test (PostgreSQL, Redis,
//! its worker) and bootstrapped (an admin, a console session, knowledge bases); stopped when
//! dropped. The tests of one binary take turns: `start` stops whatever runs in its home. With
//! our plugins behind the relay (`DIFY_DAEMON=relay`) it is started by this crate's
//! `dify/start-beside` in a home of its own, with this crate's copy of the relay (which knows a
//! tool plugin's endpoint group).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

/// Held by the running Dify of this test binary.
static TURN: Mutex<()> = Mutex::new(());

pub struct RealDifyProcess {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// What `bootstrap` printed.
    pub boot: Value,
    script_dir: PathBuf,
    /// Its own home when started beside (relayed); else `start`'s.
    home: Option<PathBuf>,
    _turn: MutexGuard<'static, ()>,
}

/// What `bootstrap` prints for the Dify at `url`: an admin, a session, knowledge bases.
fn bootstrap(script_dir: &Path, url: &str) -> Value {
    let boot = Command::new(script_dir.join("bootstrap"))
        .arg(url)
        .output()
        .expect("../shared/dify/bootstrap runs");
    assert!(
        boot.status.success(),
        "bootstrap: {}",
        String::from_utf8_lossy(&boot.stderr)
    );
    serde_json::from_slice(&boot.stdout).unwrap()
}

/// `dify/start-beside` of this crate.
fn beside_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dify/start-beside")
}

impl RealDifyProcess {
    /// Starts the Dify of `script_dir` on `port`; `None`, after saying SKIPPED and what
    /// `still_ran` instead, when that folder is absent.
    pub fn start(script_dir: &Path, port: &str, still_ran: &str) -> Option<RealDifyProcess> {
        RealDifyProcess::start_with(script_dir, port, &[], still_ran)
    }

    /// [`Self::start`] with `env` for `start` (`DIFY_DAEMON=relay`, `DIFY_RELAY_PLUGINS`, and
    /// the plugins' own settings, which they inherit).
    pub fn start_with(
        script_dir: &Path,
        port: &str,
        env: &[(&str, &str)],
        still_ran: &str,
    ) -> Option<RealDifyProcess> {
        if !script_dir.join("start").exists() {
            eprintln!(
                "SKIPPED: {} is absent, so the real Dify API cannot be started; {still_ran}",
                script_dir.display()
            );
            return None;
        }
        // A test that failed while holding the turn still ended its Dify (by `stop`, below).
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let relayed = env.contains(&("DIFY_DAEMON", "relay"));
        let home = relayed.then(|| std::env::temp_dir().join(format!("relay-dify-{port}")));
        let mut command = match &home {
            None => Command::new(script_dir.join("start")),
            Some(home) => {
                let mut beside = Command::new(beside_script());
                beside.env("DIFY_HOME", home);
                if let Some(installed) = std::env::var_os("DIFY_HOME") {
                    beside.env("DIFY_SOURCE_HOME", installed);
                }
                beside
            }
        };
        let started = command
            .env("DIFY_PORT", port)
            .envs(env.iter().copied())
            .output()
            .expect("the Dify start script runs");
        assert!(
            started.status.success(),
            "../shared/dify/start failed: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let url = String::from_utf8_lossy(&started.stdout)
            .trim()
            .lines()
            .last()
            .unwrap()
            .to_string();
        Some(RealDifyProcess {
            boot: bootstrap(script_dir, &url),
            url,
            script_dir: script_dir.to_path_buf(),
            home,
            _turn: turn,
        })
    }

    /// The Dify version `start` runs: `DIFY_VERSION`, else the default its script names
    /// (`version=${DIFY_VERSION:-1.16.1}`), as `(major, minor, patch)`.
    pub fn version(&self) -> (u32, u32, u32) {
        let text = std::env::var("DIFY_VERSION").ok().unwrap_or_else(|| {
            let script = std::fs::read_to_string(self.script_dir.join("start")).unwrap();
            let default = script
                .split("DIFY_VERSION:-")
                .nth(1)
                .expect("start names its default version");
            default[..default.find('}').unwrap()].to_string()
        });
        let parts: Vec<u32> = text.split('.').map(|p| p.parse().unwrap()).collect();
        (parts[0], parts[1], parts[2])
    }

    /// A text field of the bootstrap's answer.
    pub fn text(&self, key: &str) -> String {
        self.boot[key].as_str().unwrap().to_string()
    }

    /// A second Dify, running beside this one until dropped (two Difys at once: staging and
    /// production), on `port`, with its state in `home` and this one's installed API
    /// (`crates/test-support/dify/start-beside`); `env` as for [`Self::start_with`].
    pub fn start_beside(&self, port: &str, env: &[(&str, &str)], home: &Path) -> DifyBeside {
        let mut command = Command::new(beside_script());
        command
            .env("DIFY_PORT", port)
            .env("DIFY_HOME", home)
            .envs(env.iter().copied());
        if let Some(installed) = std::env::var_os("DIFY_HOME") {
            command.env("DIFY_SOURCE_HOME", installed);
        }
        let started = command.output().expect("start-beside runs");
        // Stopped when dropped, even if it did not start in full.
        let mut beside = DifyBeside {
            url: String::from_utf8_lossy(&started.stdout)
                .trim()
                .lines()
                .last()
                .unwrap_or_default()
                .to_string(),
            boot: Value::Null,
            home: home.to_path_buf(),
            script_dir: self.script_dir.clone(),
        };
        assert!(
            started.status.success(),
            "start-beside failed: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        beside.boot = bootstrap(&self.script_dir, &beside.url);
        beside
    }
}

/// A Dify started beside another ([`RealDifyProcess::start_beside`]); stopped when dropped.
pub struct DifyBeside {
    pub url: String,
    pub boot: Value,
    home: PathBuf,
    script_dir: PathBuf,
}

impl DifyBeside {
    /// A text field of the bootstrap's answer.
    pub fn text(&self, key: &str) -> String {
        self.boot[key].as_str().unwrap().to_string()
    }
}

impl Drop for DifyBeside {
    fn drop(&mut self) {
        let _ = Command::new(self.script_dir.join("stop"))
            .env("DIFY_HOME", &self.home)
            .status();
    }
}

impl Drop for RealDifyProcess {
    fn drop(&mut self) {
        let mut stop = Command::new(self.script_dir.join("stop"));
        if let Some(home) = &self.home {
            stop.env("DIFY_HOME", home);
        }
        let _ = stop.status();
    }
}

/// A runtime for a test's blocking calls to the real Dify.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP client without pooled connections: Dify's gunicorn closes idle ones after 2 s.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

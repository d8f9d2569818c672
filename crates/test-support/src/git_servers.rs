//! Real Git servers on loopback, started by the tests and stopped when dropped: smart HTTP
//! (`git http-backend` behind nginx through fcgiwrap) over TLS with a test CA and basic auth,
//! plain HTTP, and `sshd` with key authentication. Plus repositories built with the git CLI.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "tok-7f3a91c2e5b84d06";
pub const ALICE: &str = "alice";

/// Runs a command that must succeed; its stdout.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A bare repository served by the test servers, with a work tree to commit from.
pub struct TestRepo {
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl TestRepo {
    /// Creates `root/<name>.git` with one commit holding `files` on `main`.
    pub fn create(root: &Path, name: &str, files: &[(&str, &[u8])]) -> TestRepo {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}.work"));
        std::fs::create_dir_all(&work).unwrap();
        git(
            root,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        git(&bare, &["config", "http.receivepack", "false"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let repo = TestRepo { work, bare };
        repo.commit(files, &[], "first");
        repo
    }

    /// Writes `files`, removes `removed`, commits and pushes; returns the commit id.
    pub fn commit(&self, files: &[(&str, &[u8])], removed: &[&str], message: &str) -> String {
        for (path, content) in files {
            let target = self.work.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, content).unwrap();
        }
        for path in removed {
            git(&self.work, &["rm", "-q", path]);
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "-f", "origin", "HEAD:main"]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Replaces the branch with a new root commit holding `files` (a force push).
    pub fn rewrite(&self, files: &[(&str, &[u8])]) -> String {
        git(&self.work, &["checkout", "-q", "--orphan", "rewritten"]);
        git(&self.work, &["rm", "-rq", "--cached", "."]);
        for entry in std::fs::read_dir(&self.work).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() != ".git" {
                if path.is_dir() {
                    std::fs::remove_dir_all(path).unwrap()
                } else {
                    std::fs::remove_file(path).unwrap()
                }
            }
        }
        let head = self.commit(files, &[], "rewritten history");
        git(&self.work, &["branch", "-q", "-D", "main"]);
        git(&self.work, &["branch", "-q", "-m", "main"]);
        head
    }

    pub fn tag(&self, name: &str) {
        git(&self.work, &["tag", "-a", name, "-m", name]);
        git(
            &self.work,
            &["push", "-q", "origin", &format!("refs/tags/{name}")],
        );
    }
}

/// Key material for TLS: a CA and a server certificate for 127.0.0.1 and localhost.
pub struct TestCa {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn create(dir: &Path) -> TestCa {
        let p = |name: &str| dir.join(name);
        let quiet = |command: &mut Command| {
            run(command.stderr(Stdio::null()));
        };
        quiet(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=Git Test CA",
                ])
                .arg("-keyout")
                .arg(p("ca.key"))
                .arg("-out")
                .arg(p("ca.pem")),
        );
        quiet(
            Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .arg("-keyout")
                .arg(p("server.key"))
                .arg("-out")
                .arg(p("server.csr")),
        );
        std::fs::write(p("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        quiet(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(p("server.csr"))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-extfile")
                .arg(p("san.ext"))
                .arg("-out")
                .arg(p("server.pem")),
        );
        TestCa {
            ca_pem: std::fs::read_to_string(p("ca.pem")).unwrap(),
            cert: p("server.pem"),
            key: p("server.key"),
        }
    }
}

/// nginx in front of `git http-backend`: `https://127.0.0.1:{https_port}/private/...` needs
/// the token (user `x-access-token` or `alice`), `/public/...` needs nothing; the same on
/// plain `http://127.0.0.1:{http_port}`.
pub struct HttpServer {
    pub https_port: u16,
    pub http_port: u16,
    /// Another origin (HTTPS, same certificate) that asks every request for a login and
    /// records the `Authorization` header it got (`-` for none).
    pub recording_port: u16,
    dir: PathBuf,
    pub ca: TestCa,
    pub root: PathBuf,
    nginx: Child,
    fcgiwrap: Child,
}

impl HttpServer {
    pub fn start(dir: &Path) -> HttpServer {
        let root = dir.join("srv");
        std::fs::create_dir_all(root.join("private")).unwrap();
        std::fs::create_dir_all(root.join("public")).unwrap();
        std::fs::create_dir_all(dir.join("nginx-temp")).unwrap();
        let ca = TestCa::create(dir);
        let hash = run(Command::new("openssl").args(["passwd", "-apr1", TOKEN]));
        std::fs::write(
            dir.join("htpasswd"),
            format!("x-access-token:{hash}\n{ALICE}:{hash}\n"),
        )
        .unwrap();
        let socket = dir.join("fcgiwrap.sock");
        let mut fcgiwrap = Command::new("fcgiwrap")
            .arg("-s")
            .arg(format!("unix:{}", socket.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("fcgiwrap starts (apt-get install fcgiwrap)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(fcgiwrap.try_wait().unwrap().is_none(), "fcgiwrap exited");
            assert!(
                Instant::now() < deadline,
                "fcgiwrap did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let backend = format!(
            "{}/git-http-backend",
            run(Command::new("git").arg("--exec-path"))
        );
        let (https_port, http_port) = (free_port(), free_port());
        let location = |area: &str, auth: bool| {
            format!(
                r#"
        location ~ ^/{area}(/.*)$ {{
            {auth}
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME {backend};
            fastcgi_param GIT_PROJECT_ROOT {root}/{area};
            fastcgi_param GIT_HTTP_EXPORT_ALL 1;
            fastcgi_param PATH_INFO $1;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_pass unix:{socket};
        }}"#,
                auth = if auth {
                    format!(
                        "auth_basic \"git\"; auth_basic_user_file {}/htpasswd;",
                        dir.display()
                    )
                } else {
                    String::new()
                },
                root = root.display(),
                socket = socket.display(),
            )
        };
        let locations = format!("{}{}", location("private", true), location("public", false));
        let recording_port = free_port();
        // `/r<code>/…` redirects to the recording server (another origin); `/same/…` to
        // `/private/…` of this server.
        let redirects: String = [301, 302, 307, 308]
            .iter()
            .map(|code| {
                format!(
                    "\n        location ~ ^/r{code}(/.*)$ {{ return {code} https://127.0.0.1:{recording_port}/private$1$is_args$args; }}"
                )
            })
            .chain(std::iter::once(
                "\n        location ~ ^/same(/.*)$ { return 302 /private$1$is_args$args; }".to_string(),
            ))
            .collect();
        let temp = dir.join("nginx-temp");
        let config = format!(
            r#"
user root;
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    log_format requests '$request_method $uri';
    client_body_temp_path {temp}/body;
    fastcgi_temp_path {temp}/fastcgi;
    proxy_temp_path {temp}/proxy;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        access_log {dir}/requests.log requests;
        {locations}{redirects}
    }}
    log_format authorization '$http_authorization';
    server {{
        listen 127.0.0.1:{recording_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        access_log {dir}/recorded.log authorization;
        location / {{
            add_header WWW-Authenticate 'Basic realm="elsewhere"' always;
            return 401;
        }}
    }}
    server {{
        listen 127.0.0.1:{http_port};
        {locations}
    }}
}}
"#,
            dir = dir.display(),
            temp = temp.display(),
            cert = ca.cert.display(),
            key = ca.key.display(),
        );
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut nginx = Command::new("nginx")
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(dir)
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts (apt-get install nginx)");
        wait_for_port(https_port, &mut nginx, "nginx");
        wait_for_port(http_port, &mut nginx, "nginx");
        wait_for_port(recording_port, &mut nginx, "nginx");
        HttpServer {
            https_port,
            http_port,
            recording_port,
            dir: dir.to_path_buf(),
            ca,
            root,
            nginx,
            fcgiwrap,
        }
    }

    pub fn https_url(&self, area: &str, name: &str) -> String {
        format!("https://127.0.0.1:{}/{area}/{name}.git", self.https_port)
    }

    /// A URL that redirects with `code` to the recording server.
    pub fn redirect_url(&self, code: u16, name: &str) -> String {
        format!("https://127.0.0.1:{}/r{code}/{name}.git", self.https_port)
    }

    /// A URL that redirects to `/private/<name>.git` of this server.
    pub fn same_origin_redirect_url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/same/{name}.git", self.https_port)
    }

    /// `METHOD path` of every request the HTTPS origin answered, in order. nginx writes a
    /// request's line after its response has gone out, so a client can finish before the line
    /// lands: the log is read until it has stayed the same for 300 ms.
    pub fn requests(&self) -> Vec<String> {
        let mut seen = self.log("requests.log");
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let now = self.log("requests.log");
            if now == seen {
                return now;
            }
            seen = now;
        }
    }

    /// The `Authorization` headers the recording server received, one per request.
    pub fn recorded_authorizations(&self) -> Vec<String> {
        self.log("recorded.log")
    }

    fn log(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn http_url(&self, area: &str, name: &str) -> String {
        format!("http://127.0.0.1:{}/{area}/{name}.git", self.http_port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
        let _ = self.fcgiwrap.kill();
        let _ = self.fcgiwrap.wait();
    }
}

/// `sshd` on loopback accepting the given public keys for the current user.
pub struct SshServer {
    pub port: u16,
    pub user: String,
    /// The server's host key, as a known_hosts key (`ssh-ed25519 AAAA...`).
    pub host_key: String,
    child: Child,
}

impl SshServer {
    pub fn start(dir: &Path, authorized_keys: &[&str]) -> SshServer {
        std::fs::create_dir_all(dir).unwrap();
        let host_key = dir.join("host_ed25519");
        if !host_key.exists() {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key));
        }
        let keys = dir.join("authorized_keys");
        std::fs::write(&keys, authorized_keys.join("\n")).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = run(Command::new("id").arg("-un"));
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\nAuthorizedKeysFile {keys}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nAllowUsers {user}\nLogLevel ERROR\n",
                host = host_key.display(),
                dir = dir.display(),
                keys = keys.display(),
            ),
        )
        .unwrap();
        let sshd = if Path::new("/usr/sbin/sshd").exists() {
            "/usr/sbin/sshd"
        } else {
            "sshd"
        };
        let mut child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts (apt-get install openssh-server)");
        wait_for_port(port, &mut child, "sshd");
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let host_key = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        SshServer {
            port,
            user,
            host_key,
            child,
        }
    }

    pub fn url(&self, bare: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            bare.display()
        )
    }

    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` whose bytes contain any of `secrets`.
pub fn files_containing(dir: &Path, secrets: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, secrets));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if secrets
                .iter()
                .any(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

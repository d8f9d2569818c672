//! The sync benchmark: every scenario of the plugin against the git command line doing the
//! same work on the same repositories, in one run on one machine.
//!
//! `cargo bench --bench sync -- --size small|medium|large [--reps N] [--out FILE]`
//!
//! Shapes: docs (Markdown and text, a few binaries and files over the size limit), monorepo
//! (deep trees, mixed text and binary), wide (one directory of small files). Each is served
//! over smart HTTP (nginx + git http-backend, TLS) and as a local path. Scenarios: a cold full
//! sync, a warm sync with no change, a 1-file change, a 1% change, deletes and renames, a
//! force-pushed rewrite, and a sync after the clone cache was wiped. The plugin is driven
//! through the fake daemon (the way Dify drives it) and through `git-datasource crawl`.
//! Then mirroring (`sync/mirror.rs`) and `git-datasource sync` through the pipeline API
//! (`sync/pipeline.rs`), against the fake Knowledge API; and the browser's listing and
//! per-file text (`sync/browse.rs`).

#[path = "sync/browse.rs"]
mod browse;
#[path = "sync/mirror.rs"]
mod mirror;
#[path = "sync/pipeline.rs"]
mod pipeline;
#[path = "../tests/datasource/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use support::fake_daemon::{FakeDaemon, BINARY};
use support::git_servers::{run, HttpServer};
use support::imported_repo::ImportedRepo as Importer;

const HUGE_BUDGET: &str = "2000000000";

// ---------------------------------------------------------------- repositories

/// A deterministic generator (a 64-bit LCG), so every run builds the same repositories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn text(&mut self, bytes: usize) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "repository",
            "branch",
            "commit",
            "the",
            "knowledge",
            "document",
            "sync",
            "of",
            "and",
            "Dify",
            "tree",
            "blob",
            "delta",
            "snapshot",
            "a",
            "plugin",
        ];
        let mut out = Vec::with_capacity(bytes + 16);
        while out.len() < bytes {
            out.extend_from_slice(WORDS[self.below(16) as usize].as_bytes());
            out.push(if self.below(12) == 0 { b'\n' } else { b' ' });
        }
        out
    }
    fn binary(&mut self, bytes: usize) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend((0..bytes).map(|_| self.next() as u8));
        out
    }
}

type Tree = BTreeMap<String, Vec<u8>>;

fn shape(name: &str, scale: f64) -> Tree {
    let n = |count: f64| (count * scale).max(1.0) as usize;
    let mut rng = Rng(name.bytes().fold(7u64, |h, b| h * 31 + u64::from(b)));
    let mut tree = Tree::new();
    match name {
        "docs" => {
            for i in 0..n(2000.0) {
                let ext = if i % 4 == 0 { "txt" } else { "md" };
                let size = 300 + rng.below(3000) as usize;
                tree.insert(
                    format!("docs/section{}/page{i:05}.{ext}", i % 20),
                    rng.text(size),
                );
            }
            for i in 0..n(10.0) {
                tree.insert(format!("docs/images/figure{i}.png"), rng.binary(20_000));
            }
            for i in 0..3 {
                tree.insert(format!("docs/data/huge{i}.md"), rng.text(6_000_000));
            }
        }
        "monorepo" => {
            for i in 0..n(50_000.0) {
                let depth = 2 + (i % 4);
                let dirs: Vec<String> = (0..depth)
                    .map(|d| format!("m{}", (i / (7 + d * 13)) % 9))
                    .collect();
                if i % 10 == 0 {
                    tree.insert(format!("{}/asset{i}.bin", dirs.join("/")), rng.binary(2000));
                } else {
                    let size = 200 + rng.below(1500) as usize;
                    tree.insert(format!("{}/file{i}.rs", dirs.join("/")), rng.text(size));
                }
            }
        }
        "wide" => {
            for i in 0..n(20_000.0) {
                let size = 50 + rng.below(300) as usize;
                tree.insert(format!("notes/note{i:06}.md"), rng.text(size));
            }
        }
        other => panic!("unknown shape {other}"),
    }
    tree
}

/// `files` files of `bytes` of text, 200 a directory, as documentation trees tend to be.
fn docs_tree(files: usize, rng: &mut Rng, bytes: usize) -> Tree {
    (0..files)
        .map(|i| (format!("docs/{:03}/{i:06}.md", i / 200), rng.text(bytes)))
        .collect()
}

/// Runs `scenario` at 5,000 files, and at 100,000 with `with_100k`: the report lines and
/// their JSON.
fn at_sizes(
    work: &Path,
    with_100k: bool,
    scenario: fn(&Path, usize) -> (Vec<String>, Value),
) -> (Vec<String>, Value) {
    let mut sizes = vec![5_000];
    if with_100k {
        sizes.push(100_000);
    }
    let (mut lines, mut reports) = (Vec::new(), Vec::new());
    for files in sizes {
        let (more, report) = scenario(work, files);
        lines.extend(more);
        reports.push(report);
    }
    (lines, Value::Array(reports))
}

// ---------------------------------------------------------------- measuring

#[derive(Debug, Clone, Default)]
struct Sample {
    wall: f64,
    cpu: f64,
    peak_rss_mb: f64,
    /// The largest anonymous (heap) part of the resident memory seen: without the pages of
    /// mapped pack files, which the kernel drops at will.
    peak_anon_mb: f64,
    final_bytes: usize,
    runs: usize,
    delivered_oids: Vec<String>,
}

/// The peak resident memory of a running process, in MB (`VmHWM`, which starts afresh at
/// exec, unlike `ru_maxrss`, which inherits the forking parent's).
fn peak_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM:")
}

/// A size from `/proc/<pid>/status`, in MB (0 once the process is gone).
fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Waits for a child and returns its CPU seconds (user + system) from the kernel.
fn reap(pid: u32) -> f64 {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child; the struct is owned and zeroed.
    let reaped = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid as i32, "wait4 failed");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

struct Target {
    url: String,
    credentials: Value,
    env: Vec<(String, String)>,
    /// Environment for the git command line (its CA file, for TLS).
    git_env: Vec<(String, String)>,
}

/// One plugin process, driven through the fake daemon until its change set is delivered
/// (or one run, when `one_run`). Plugin storage persists in `storage` between processes.
fn plugin_via_daemon(
    target: &Target,
    cache: &Path,
    storage: &mut HashMap<String, Vec<u8>>,
    budget: Option<&str>,
) -> Sample {
    let cache = cache.display().to_string();
    let mut envs: Vec<(&str, &str)> = vec![
        ("GIT_DATASOURCE_CACHE_DIR", &cache),
        ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
        ("GIT_DATASOURCE_LOG", "warn"),
    ];
    if let Some(budget) = budget {
        envs.push(("GIT_DATASOURCE_MAX_RESULT_BYTES", budget));
        envs.push(("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", HUGE_BUDGET));
    }
    for (k, v) in &target.env {
        envs.push((k, v));
    }
    let started = Instant::now();
    let daemon = FakeDaemon::spawn(&envs);
    daemon.recorded().storage = storage.clone();
    let mut sample = Sample::default();
    // Each run's final message, read once the runs are timed (measuring them is the bench's
    // work, not the plugin's).
    let mut finals = Vec::new();
    loop {
        sample.runs += 1;
        let session = daemon.request(
            "invoke_website_datasource_get_crawl",
            json!({"provider": "git_datasource", "datasource": "git_datasource", "credentials": target.credentials,
                   "datasource_parameters": {"repo_url": target.url}}),
        );
        let mut messages = daemon.finish(&session);
        let last = messages.last().unwrap();
        assert_eq!(
            last["type"],
            "end",
            "{:?}",
            &messages[messages.len().saturating_sub(2)..]
        );
        let last = messages.swap_remove(messages.len() - 2);
        let result = &last["data"]["result"];
        let done = result["completed"] == result["total"];
        finals.push(last);
        if done || sample.runs > 200 {
            break;
        }
    }
    sample.wall = started.elapsed().as_secs_f64();
    *storage = daemon.recorded().storage.clone();
    for last in &finals {
        let line = serde_json::to_string(last).unwrap();
        sample.final_bytes = sample.final_bytes.max(line.len());
        for document in last["data"]["result"]["web_info_list"].as_array().unwrap() {
            let description = document["description"].as_str().unwrap();
            sample
                .delivered_oids
                .push(description.rsplit("blob ").next().unwrap().to_string());
        }
    }
    let pid = daemon.child.as_ref().unwrap().id();
    sample.peak_rss_mb = peak_rss_mb(pid);
    daemon.close_input();
    let mut daemon = daemon;
    let child = daemon.child.take().unwrap();
    sample.cpu = reap(pid);
    std::mem::forget(child);
    sample
}

/// `git-datasource crawl` with a state directory, raised budget.
fn plugin_via_cli(target: &Target, cache: &Path, state: &Path) -> Sample {
    let mut command = Command::new(BINARY);
    command
        .arg("crawl")
        .arg(&target.url)
        .arg("--state-dir")
        .arg(state)
        .env("GIT_DATASOURCE_CACHE_DIR", cache)
        .env("GIT_DATASOURCE_MAX_RESULT_BYTES", HUGE_BUDGET)
        .env("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", HUGE_BUDGET)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in &target.env {
        command.env(k, v);
    }
    if let Some(ca) = target.credentials["ca_certificate"].as_str() {
        let ca_file = state.with_extension("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        command.env("GIT_DATASOURCE_CA_FILE", &ca_file);
    }
    Sample {
        runs: 1,
        ..measure(&mut command)
    }
}

/// Runs a child to its end: wall and CPU seconds and its peak resident memory.
fn measure(command: &mut Command) -> Sample {
    let started = Instant::now();
    let child = command.spawn().unwrap();
    let pid = child.id();
    // Sample the peak until the process is gone (VmHWM only grows).
    let (mut peak, mut anon) = (0.0f64, 0.0f64);
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        peak = peak.max(peak_rss_mb(pid));
        anon = anon.max(status_mb(pid, "RssAnon:"));
        // SAFETY: a non-blocking wait on our own child.
        let reaped = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid as i32 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::mem::forget(child);
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed ({status})"
    );
    Sample {
        wall: started.elapsed().as_secs_f64(),
        cpu,
        peak_rss_mb: peak,
        peak_anon_mb: anon,
        ..Sample::default()
    }
}

/// The same work with the git command line: clone or fetch, list the tree, read the blobs.
fn baseline(target: &Target, clone: &Path, cold: bool, oids: &[String]) -> Sample {
    let started = Instant::now();
    let git = |args: &[&str]| {
        let mut command = Command::new("git");
        for (name, value) in &target.git_env {
            command.env(name, value);
        }
        command.args(args);
        command
    };
    if cold {
        let _ = std::fs::remove_dir_all(clone);
        run(git(&[
            "clone",
            "-q",
            "--depth",
            "1",
            "--bare",
            "--single-branch",
            "--branch",
            "main",
            &target.url,
        ])
        .arg(clone));
    } else {
        run(&mut git(&[
            "-C",
            clone.to_str().unwrap(),
            "fetch",
            "-q",
            "--depth",
            "1",
            "--force",
            "origin",
            "+refs/heads/main:refs/heads/main",
        ]));
    }
    run(git(&["-C", clone.to_str().unwrap(), "ls-tree", "-r", "main"]).stdout(Stdio::piped()));
    if !oids.is_empty() {
        let mut child = git(&["-C", clone.to_str().unwrap(), "cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        for oid in oids {
            writeln!(input, "{oid}").unwrap();
        }
        drop(input);
        assert!(child.wait().unwrap().success());
    }
    Sample {
        wall: started.elapsed().as_secs_f64(),
        runs: 1,
        ..Sample::default()
    }
}

// ---------------------------------------------------------------- scenarios

const SCENARIOS: [&str; 7] = [
    "cold full sync",
    "no change",
    "1 file changed",
    "1% changed",
    "deletes and renames",
    "force push",
    "cache wiped",
];

/// Changes the repository for scenario `index` (the first two change nothing).
fn mutate(importer: &mut Importer, scenario: &str, rng: &mut Rng) {
    let paths: Vec<String> = importer
        .tree
        .keys()
        .filter(|p| !p.ends_with(".bin") && !p.ends_with(".png"))
        .cloned()
        .collect();
    match scenario {
        "1 file changed" => {
            let path = paths[paths.len() / 2].clone();
            importer.commit(vec![(path, rng.text(800))], &[], false, "edit one file");
        }
        "1% changed" => {
            let changes = paths
                .iter()
                .step_by(100)
                .map(|p| (p.clone(), rng.text(700)))
                .collect();
            importer.commit(changes, &[], false, "edit 1%");
        }
        "deletes and renames" => {
            let gone: Vec<String> = paths.iter().skip(3).step_by(97).take(10).cloned().collect();
            let moved: Vec<String> = paths
                .iter()
                .skip(5)
                .step_by(89)
                .take(10)
                .filter(|p| !gone.contains(p))
                .cloned()
                .collect();
            let renamed: Vec<(String, Vec<u8>)> = moved
                .iter()
                .map(|p| (format!("{p}.moved.md"), importer.tree[p].clone()))
                .collect();
            let mut deleted = gone;
            deleted.extend(moved);
            importer.commit(renamed, &deleted, false, "delete and rename");
        }
        "force push" => {
            let changes = paths
                .iter()
                .skip(7)
                .step_by(200)
                .map(|p| (p.clone(), rng.text(500)))
                .collect();
            importer.commit(changes, &[], true, "rewritten history");
        }
        _ => {}
    }
}

#[derive(Default)]
struct Row {
    daemon: Vec<Sample>,
    cli: Vec<Sample>,
    git: Vec<Sample>,
    default_budget_runs: Vec<usize>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn spread(values: &[f64]) -> f64 {
    let max = values.iter().cloned().fold(f64::MIN, f64::max);
    let min = values.iter().cloned().fold(f64::MAX, f64::min);
    max - min
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let size = flag("--size").unwrap_or_else(|| "small".into());
    let scale = match size.as_str() {
        "small" => 0.1,
        "medium" => 1.0,
        "large" => 2.0,
        other => panic!("--size small|medium|large, not {other}"),
    };
    let reps: usize = flag("--reps").and_then(|r| r.parse().ok()).unwrap_or(3);
    let out = flag("--out").unwrap_or_else(|| format!("target/bench-sync-{size}.json"));
    let only: Option<String> = flag("--shape");

    let work = tempfile::tempdir().unwrap();
    let server = HttpServer::start(&work.path().join("http"));
    let ca = server.ca.ca_pem.clone();
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();

    let mut rows: BTreeMap<(String, String, usize), Row> = BTreeMap::new();
    let shapes: Vec<&str> = ["docs", "monorepo", "wide"]
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| o == *s))
        .collect();
    for shape_name in shapes {
        let files = shape(shape_name, scale);
        eprintln!("{shape_name}: {} files", files.len());
        for transport in ["https", "local"] {
            for rep in 0..reps {
                let base = work.path().join(format!("{shape_name}-{transport}-{rep}"));
                let bare = server
                    .root
                    .join("public")
                    .join(format!("{shape_name}-{transport}-{rep}.git"));
                let mut importer = Importer::create(&bare, files.clone());
                let target = match transport {
                    "https" => Target {
                        url: server.https_url("public", &format!("{shape_name}-{transport}-{rep}")),
                        credentials: json!({"ca_certificate": ca}),
                        env: vec![],
                        git_env: vec![("GIT_SSL_CAINFO".into(), ca_file.display().to_string())],
                    },
                    _ => Target {
                        url: format!("file://{}", bare.display()),
                        credentials: json!({}),
                        env: vec![],
                        git_env: vec![],
                    },
                };
                let (daemon_cache, cli_cache, default_cache) = (
                    base.join("cache-daemon"),
                    base.join("cache-cli"),
                    base.join("cache-default"),
                );
                let (cli_state, clone) = (base.join("cli-state"), base.join("git-clone"));
                let mut storage = HashMap::new();
                let mut default_storage = HashMap::new();
                let mut rng = Rng(rep as u64 + 99);
                for (index, scenario) in SCENARIOS.iter().enumerate() {
                    mutate(&mut importer, scenario, &mut rng);
                    if *scenario == "cache wiped" {
                        for cache in [&daemon_cache, &cli_cache, &default_cache] {
                            let _ = std::fs::remove_dir_all(cache);
                        }
                    }
                    let daemon =
                        plugin_via_daemon(&target, &daemon_cache, &mut storage, Some(HUGE_BUDGET));
                    let cli = plugin_via_cli(&target, &cli_cache, &cli_state);
                    let cold = index == 0 || *scenario == "cache wiped";
                    let git = baseline(&target, &clone, cold, &daemon.delivered_oids);
                    let default =
                        plugin_via_daemon(&target, &default_cache, &mut default_storage, None);
                    let row = rows
                        .entry((shape_name.to_string(), transport.to_string(), index))
                        .or_default();
                    row.default_budget_runs.push(default.runs);
                    row.daemon.push(daemon);
                    row.cli.push(cli);
                    row.git.push(git);
                }
                let _ = std::fs::remove_dir_all(&base);
                let _ = std::fs::remove_dir_all(&bare);
            }
        }
    }

    // Report.
    let mut json_rows = Vec::new();
    println!(
        "{:<9} {:<6} {:<20} {:>10} {:>10} {:>10} {:>7} {:>8} {:>9} {:>11} {:>5}",
        "shape",
        "via",
        "scenario",
        "daemon s",
        "cli s",
        "git s",
        "ratio",
        "cpu s",
        "rss MB",
        "final B",
        "runs"
    );
    let mut cold_of: HashMap<(String, String), f64> = HashMap::new();
    let mut verdicts = Vec::new();
    for ((shape, transport, index), row) in &rows {
        let mut wall: Vec<f64> = row.daemon.iter().map(|s| s.wall).collect();
        let mut cli: Vec<f64> = row.cli.iter().map(|s| s.wall).collect();
        let mut git: Vec<f64> = row.git.iter().map(|s| s.wall).collect();
        let mut cpu: Vec<f64> = row.daemon.iter().map(|s| s.cpu).collect();
        let mut rss: Vec<f64> = row.daemon.iter().map(|s| s.peak_rss_mb).collect();
        let final_bytes = row.daemon.iter().map(|s| s.final_bytes).max().unwrap_or(0);
        let runs = row.default_budget_runs.iter().copied().max().unwrap_or(0);
        let (d, c, g) = (median(&mut wall), median(&mut cli), median(&mut git));
        let ratio = d / g.max(1e-9);
        let scenario = SCENARIOS[*index];
        println!(
            "{shape:<9} {transport:<6} {scenario:<20} {d:>10.3} {c:>10.3} {g:>10.3} {ratio:>7.2} {:>8.3} {:>9.1} {final_bytes:>11} {runs:>5}",
            median(&mut cpu),
            median(&mut rss)
        );
        if *index == 0 {
            cold_of.insert((shape.clone(), transport.clone()), d);
            verdicts.push(format!(
                "{shape}/{transport}: cold full sync {ratio:.2}x git (target <= 1.2x): {}",
                if ratio <= 1.2 { "met" } else { "MISSED" }
            ));
            let limit = 2.0 * final_bytes as f64 / 1e6 + 50.0;
            let peak = rss.iter().cloned().fold(0.0, f64::max);
            verdicts.push(format!("{shape}/{transport}: peak memory {peak:.0} MB vs 2x final message + 50 MB = {limit:.0} MB: {}", if peak <= limit { "met" } else { "MISSED" }));
        }
        let cold = cold_of
            .get(&(shape.clone(), transport.clone()))
            .copied()
            .unwrap_or(f64::NAN);
        if scenario == "no change" {
            let share = d / cold;
            verdicts.push(format!(
                "{shape}/{transport}: no-change sync {:.1}% of cold (target < 5%): {}",
                share * 100.0,
                if share < 0.05 { "met" } else { "MISSED" }
            ));
        }
        if scenario == "1 file changed" && shape == "monorepo" {
            let share = d / cold;
            verdicts.push(format!(
                "{shape}/{transport}: 1-file change {:.1}% of cold (target < 5%): {}",
                share * 100.0,
                if share < 0.05 { "met" } else { "MISSED" }
            ));
        }
        json_rows.push(json!({
            "shape": shape, "transport": transport, "scenario": scenario,
            "daemon_seconds": {"median": d, "spread": spread(&row.daemon.iter().map(|s| s.wall).collect::<Vec<_>>())},
            "cli_seconds": {"median": c, "spread": spread(&row.cli.iter().map(|s| s.wall).collect::<Vec<_>>())},
            "git_seconds": {"median": g, "spread": spread(&row.git.iter().map(|s| s.wall).collect::<Vec<_>>())},
            "ratio": ratio, "cpu_seconds": median(&mut cpu), "peak_rss_mb": median(&mut rss),
            "final_message_bytes": final_bytes, "default_budget_runs": runs,
        }));
    }
    println!();
    for verdict in &verdicts {
        println!("{verdict}");
    }
    println!();
    let (mirror_lines, mirror_report) = mirror::run(work.path());
    for line in &mirror_lines {
        println!("{line}");
    }
    let (sync_lines, sync_report) = pipeline::run(work.path(), size != "small");
    for line in &sync_lines {
        println!("{line}");
    }
    let (browse_lines, browse_report) = browse::run(work.path(), size != "small");
    for line in &browse_lines {
        println!("{line}");
    }
    let report = json!({"size": size, "reps": reps, "rows": json_rows, "targets": verdicts,
                        "mirror": mirror_report, "pipeline_sync": sync_report,
                        "browse": browse_report});
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nwritten to {out}");
}

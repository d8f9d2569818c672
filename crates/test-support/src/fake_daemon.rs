//! A fake plugin daemon: writes requests the way `Session.Message` does, reads every line the
//! plugin writes, answers storage invocations from a real in-memory store with the daemon's
//! replies and error events, and records everything for assertions.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The plugin a test binary drives (a [`FakeDaemon`] of it spawns its binary).
pub trait UnderTest {
    const PLUGIN: Plugin;
}

/// A plugin's binary, its directory, and its declaration files there.
#[derive(Debug, Clone, Copy)]
pub struct Plugin {
    pub binary: &'static str,
    pub dir: &'static str,
    pub files: &'static [&'static str],
}

impl Plugin {
    /// Copies the plugin's own files into `dir`, to run or check a modified copy there.
    pub fn copy_to(&self, dir: &std::path::Path) {
        for path in self.files {
            let target = dir.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(std::path::Path::new(self.dir).join(path), target).unwrap();
        }
    }
}

/// How the fake storage behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// Answers like the daemon.
    Normal,
    /// Every operation fails with an error event, as when the storage backend is down.
    Failing,
    /// Never answers, to exercise timeouts.
    Silent,
    /// Reads work, every `set` fails (a full quota or a failing backend).
    FailWrites,
}

#[derive(Default)]
pub struct Recorded {
    /// Every line the plugin wrote, parsed, with the time it arrived.
    pub lines: Vec<(Instant, Value)>,
    /// Lines that were not JSON.
    pub junk: Vec<Vec<u8>>,
    pub storage: HashMap<String, Vec<u8>>,
    /// `opt key` of every storage call, in arrival order.
    pub storage_calls: Vec<String>,
    pub closed: bool,
}

impl Recorded {
    pub fn heartbeats(&self) -> Vec<Instant> {
        self.lines
            .iter()
            .filter(|(_, line)| line["event"] == "heartbeat")
            .map(|(at, _)| *at)
            .collect()
    }

    /// The replies (`{type, data}` of `stream`, `end`, `error`) written for one session, in
    /// order; its storage invocations are left out.
    pub fn session(&self, session_id: &str) -> Vec<Value> {
        self.lines
            .iter()
            .filter(|(_, line)| line["event"] == "session" && line["session_id"] == session_id)
            .filter(|(_, line)| line["data"]["type"] != "invoke")
            .map(|(_, line)| line["data"].clone())
            .collect()
    }
}

struct Shared {
    recorded: Mutex<Recorded>,
    changed: Condvar,
    storage_mode: Mutex<StorageMode>,
    /// One storage call, by its index in `storage_calls`, fails (or, `true`, gets no reply).
    storage_fault: Mutex<Option<(usize, bool)>>,
}

/// The fake daemon, talking to a plugin: `P` is the plugin it spawns ([`UnderTest`]); a
/// daemon over streams of an in-process runtime needs none.
pub struct FakeDaemon<P = ()> {
    to_plugin: Arc<Mutex<Box<dyn Write + Send>>>,
    shared: Arc<Shared>,
    pub child: Option<Child>,
    pub stderr: Arc<Mutex<Vec<u8>>>,
    next_session: Mutex<u64>,
    plugin: std::marker::PhantomData<P>,
}

impl<P: UnderTest> FakeDaemon<P> {
    /// Spawns the plugin binary the way the local runtime does: pipes, `INSTALL_METHOD=local`,
    /// the working directory holding the plugin files.
    pub fn spawn(envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(P::PLUGIN.binary);
        command
            .current_dir(P::PLUGIN.dir)
            .env("INSTALL_METHOD", "local")
            .env_remove("PLUGIN_RUNTIME_MAX_BUFFER_SIZE")
            .env_remove("PLUGIN_STDIO_MAX_BUFFER_SIZE");
        Self::spawn_command(command, envs)
    }
}

impl<P> FakeDaemon<P> {
    /// Talks to a plugin over any pair of byte streams.
    pub fn over(
        from_plugin: impl Read + Send + 'static,
        to_plugin: impl Write + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            recorded: Mutex::new(Recorded::default()),
            changed: Condvar::new(),
            storage_mode: Mutex::new(StorageMode::Normal),
            storage_fault: Mutex::new(None),
        });
        let to_plugin: Arc<Mutex<Box<dyn Write + Send>>> =
            Arc::new(Mutex::new(Box::new(to_plugin)));
        let reader_shared = shared.clone();
        let reader_out = to_plugin.clone();
        std::thread::spawn(move || read_plugin(from_plugin, reader_shared, reader_out));
        FakeDaemon {
            to_plugin,
            shared,
            child: None,
            stderr: Arc::new(Mutex::new(Vec::new())),
            next_session: Mutex::new(0),
            plugin: std::marker::PhantomData,
        }
    }

    pub fn spawn_command(mut command: Command, envs: &[(&str, &str)]) -> Self {
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the plugin binary starts");
        let stdout = child.stdout.take().unwrap();
        let stdin: ChildStdin = child.stdin.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut daemon = Self::over(stdout, stdin);
        let sink = daemon.stderr.clone();
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        daemon.child = Some(child);
        daemon
    }

    pub fn set_storage_mode(&self, mode: StorageMode) {
        *self.shared.storage_mode.lock().unwrap() = mode;
    }

    /// Makes the storage call with index `call` (counted over the daemon's life) fail with an
    /// error event, or with `silent` get no reply at all; `None` clears it.
    pub fn set_storage_fault(&self, fault: Option<(usize, bool)>) {
        *self.shared.storage_fault.lock().unwrap() = fault;
    }

    pub fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.shared.recorded.lock().unwrap()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The plugin's stderr once it holds every one of `needles` (stderr is read by its own
    /// thread, so it may trail the replies), or as it is after `timeout`.
    pub fn stderr_once(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.stderr_text();
            if needles.iter().all(|n| text.contains(n)) || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes raw bytes to the plugin (a line must include its `\n`).
    pub fn send_raw(&self, bytes: &[u8]) {
        let mut out = self.to_plugin.lock().unwrap();
        out.write_all(bytes).unwrap();
        out.flush().unwrap();
    }

    /// Sends a request exactly as the daemon frames it; returns its session id.
    pub fn request(&self, action: &str, fields: Value) -> String {
        let session_id = {
            let mut n = self.next_session.lock().unwrap();
            *n += 1;
            format!("00000000-0000-4000-8000-{:012x}", *n)
        };
        let mut data = json!({"user_id": "4d0b5a0c-1c8e-4a7e-8a4f-5b0f0c7d9e22", "type": "datasource", "action": action});
        if let Value::Object(fields) = fields {
            data.as_object_mut().unwrap().extend(fields);
        }
        let line = envelope(&session_id, "request", data);
        self.send_raw(format!("{line}\n").as_bytes());
        session_id
    }

    /// Waits until `ready` holds for the recording, or panics after `timeout`.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut(&Recorded) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut recorded = self.shared.recorded.lock().unwrap();
        loop {
            if let Some(value) = ready(&recorded) {
                return value;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out waiting for {what}; stderr: {}",
                    self.stderr_text()
                );
            }
            recorded = self
                .shared
                .changed
                .wait_timeout(recorded, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits for the session's `end` or `error` and returns all its messages.
    pub fn finish(&self, session_id: &str) -> Vec<Value> {
        self.wait_for(
            Duration::from_secs(60),
            &format!("the end of session {session_id}"),
            |r| {
                let done = r.lines.iter().rev().any(|(_, line)| {
                    line["session_id"] == session_id
                        && matches!(line["data"]["type"].as_str(), Some("end" | "error"))
                });
                done.then(|| r.session(session_id))
            },
        )
    }

    /// Closes the plugin's stdin and waits for it to exit.
    pub fn close_and_wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.close_input();
        self.wait_exit(timeout)
    }

    /// Closes the plugin's stdin (end of input), without waiting.
    pub fn close_input(&self) {
        *self.to_plugin.lock().unwrap() = Box::new(std::io::sink());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl<P> Drop for FakeDaemon<P> {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The daemon's request envelope, every key present, in `pluginInStreamMessage` order.
pub fn envelope(session_id: &str, event: &str, data: Value) -> String {
    format!(
        r#"{{"session_id":{},"conversation_id":null,"message_id":null,"app_id":null,"endpoint_id":null,"context":null,"event":{},"data":{}}}"#,
        json!(session_id),
        json!(event),
        data
    )
}

fn read_plugin(
    from_plugin: impl Read,
    shared: Arc<Shared>,
    to_plugin: Arc<Mutex<Box<dyn Write + Send>>>,
) {
    let mut reader = BufReader::new(from_plugin);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
        if trimmed.is_empty() {
            continue;
        }
        let parsed = serde_json::from_slice::<Value>(trimmed);
        let reply = match &parsed {
            Ok(value) if value["event"] == "session" && value["data"]["type"] == "invoke" => {
                answer_invoke(&shared, value)
            }
            _ => Vec::new(),
        };
        {
            let mut recorded = shared.recorded.lock().unwrap();
            match parsed {
                Ok(value) => recorded.lines.push((Instant::now(), value)),
                Err(_) => recorded.junk.push(trimmed.to_vec()),
            }
        }
        shared.changed.notify_all();
        if !reply.is_empty() {
            let mut out = to_plugin.lock().unwrap();
            for reply_line in reply {
                let _ = out.write_all(format!("{reply_line}\n").as_bytes());
            }
            let _ = out.flush();
        }
    }
    shared.recorded.lock().unwrap().closed = true;
    shared.changed.notify_all();
}

/// The daemon's answer to a storage invocation (`executeDifyInvocationStorageTask`): zero or
/// more `response`/`error` events, then `end`.
fn answer_invoke(shared: &Shared, line: &Value) -> Vec<String> {
    let session_id = line["session_id"].as_str().unwrap_or_default();
    let invoke = &line["data"]["data"];
    let id = invoke["backwards_request_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mode = *shared.storage_mode.lock().unwrap();
    if mode == StorageMode::Silent {
        return Vec::new();
    }
    let event = |event: &str, message: &str, data: Value| {
        envelope(
            session_id,
            "backwards_response",
            json!({"backwards_request_id": id, "event": event, "message": message, "data": data}),
        )
    };
    let end = event("end", "", Value::Null);
    let request = &invoke["request"];
    let opt = request["opt"].as_str().unwrap_or_default();
    let key = request["key"].as_str().unwrap_or_default().to_string();
    let mut recorded = shared.recorded.lock().unwrap();
    let fault = *shared.storage_fault.lock().unwrap();
    let faulty = fault.is_some_and(|(call, _)| call == recorded.storage_calls.len());
    recorded.storage_calls.push(format!("{opt} {key}"));
    if faulty && fault.is_some_and(|(_, silent)| silent) {
        return Vec::new();
    }
    let outcome: Result<Value, String> = if faulty {
        Err("save data failed: injected fault".into())
    } else if invoke["type"] != "storage" {
        Err(format!("unknown invoke type {}", invoke["type"]))
    } else if mode == StorageMode::Failing || (mode == StorageMode::FailWrites && opt == "set") {
        Err("save data failed: storage backend unavailable".into())
    } else if key.is_empty() {
        Err("unmarshal backwards invoke request failed: Key: 'InvokeStorageRequest.Key' Error:Field validation for 'Key' failed on the 'required' tag".into())
    } else if key.contains("..") || key.contains("//") || key.contains('\\') {
        Err("invalid key: path traversal attempt detected".into())
    } else {
        match opt {
            "get" => match recorded.storage.get(&key) {
                Some(value) => Ok(json!({"data": hex::encode(value)})),
                None => Err(
                    "load data failed, please check if the key is correct or you have not set it"
                        .into(),
                ),
            },
            "set" if key.len() > 256 => {
                Err("save data failed: key length must be less than 256 characters".into())
            }
            "set" => match hex::decode(request["value"].as_str().unwrap_or_default()) {
                Ok(value) => {
                    recorded.storage.insert(key, value);
                    Ok(json!({"data": "ok"}))
                }
                Err(error) => Err(format!("decode data failed: {error}")),
            },
            "exist" => {
                let exists = recorded.storage.contains_key(&key);
                Ok(json!({"data": exists, "exist_num": i32::from(exists)}))
            }
            "del" => {
                let removed = recorded.storage.remove(&key).is_some();
                Ok(json!({"data": "ok", "deleted_num": i32::from(removed)}))
            }
            other => Err(format!(
                "unmarshal backwards invoke request failed: unknown opt {other:?}"
            )),
        }
    };
    match outcome {
        Ok(data) => vec![event("response", "struct", data), end],
        Err(message) => vec![event("error", &message, Value::Null), end],
    }
}

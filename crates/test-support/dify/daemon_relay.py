"""Copied from ../shared/dify/daemon_relay.py (read-only for us) and extended with a tool plugin's
endpoint group (manifest `plugins.endpoints`): its files are part of the package it extracts, as the
daemon extracts the whole package; Dify's endpoint routes are answered (setup, list: the endpoints
live in memory, settings as given, where the daemon keeps them encrypted by Dify) and
`/e/<hook id>/<path>` is relayed to the plugin as the daemon does it (internal/service/endpoint.go:
the request as Go's Request.Write prints it, without X-Forwarded-* and with Dify-Hook-Id and
Dify-Hook-Url, hex, in an `invoke_endpoint` request with the settings; the answer's first chunk
gives status, headers and body); and with the `online_drive` routes (browse_files, its answer bound to
GetOnlineDriveBrowseFilesResponse; download_file, each chunk to DataSourceResponseChunk:
pkg/entities/{requests,datasource_entities}/datasource.go). Its helpers still come from ../shared/dify.

A stand-in for Dify's plugin daemon that relays to REAL plugin binaries over stdio.

    daemon_relay.py PORT [--plugin DIR BINARY]... [--work DIR] [--storage FILE]
    (without --plugin: DIFY_RELAY_PLUGINS="DIR:BINARY,DIR:BINARY")

DIR holds a plugin's manifest.yaml and the provider / datasource / tool YAMLs and _assets it names; BINARY
is its native executable. Each plugin is copied (declarations only) to WORK/<author>/<name>-<version>@<checksum>
as the daemon extracts a package, and one long-lived process per plugin is started there the way the package's
launcher starts it: no arguments, INSTALL_METHOD=local, the relay's environment (so GIT_DATASOURCE_* etc. set
for the relay reach the plugin). Requests are sent once it has written its first heartbeat.

Routes for the plugin ids given, mirroring langgenius/dify-plugin-daemon bdb5642a (0.6.10-6):
  GET  plugin/<t>/management/list | /installation/fetch/batch   internal/service/manage_plugin.go ListPlugins,
                                                                 BatchFetchPluginInstallationByIDs
  GET  plugin/<t>/management/datasources | /datasource          manage_plugin.go ListDatasources, GetDatasource
  GET  plugin/<t>/management/tools | /tool                      manage_plugin.go ListTools, GetTool
  GET  plugin/<t>/asset/<name>                                   the plugin's _assets/<name>
  POST plugin/<t>/dispatch/datasource/{validate_credentials,get_website_crawl,online_drive_browse_files,
                                       online_drive_download_file}
  POST plugin/<t>/dispatch/tool/{validate_credentials,invoke}
       internal/server/controllers/{datasource,tool}.gen.go -> internal/service/base_sse.go baseSSEWithSession
       -> internal/core/io_tunnel/{datasource,tool}.gen.go -> io_tunnel/generic.go invokePluginOnce
The request's `data` is bound to the route's struct (pkg/entities/requests/{datasource,tool}.go) and sent as
one `request` line, data = {user_id, type, action} + that struct (io_tunnel/mapping.go GetInvokePluginMap), in
the envelope of internal/core/session_manager/session.go. Each `stream` session message is parsed into the
route's response type (pkg/entities/{datasource,tool}_entities) and sent as the SSE event
`data: {"code":0,"message":"success","data":...}`; `end` ends the stream; `error` ends it with
{"code":-500,"message":"{\"message\":<the error JSON>,\"error_type\":\"PluginInvokeError\",\"args\":null}"}
(unless its args fail the daemon's validation, which skips it); no end within PLUGIN_MAX_EXECUTION_TIMEOUT
(600 s) gives "killed by timeout" (internal/types/exception). Storage backwards invocations are answered by
plugin_stdio.py (hex values, daemon-shaped replies) from a store per plugin kept in memory and in
--storage FILE, and only while their session is open: afterwards the real daemon has no listener for them.
Everything else, and every other plugin id, goes to daemon_stub.py (the General Chunker tool, empty successes).

Not mirrored: tenants (one store per plugin), several instances, installs, signatures, remote debugging, the
120 s liveness kill. A plugin that exits or writes a line >= the 5 MiB cap fails its open requests at once here
(the real daemon kills it and those requests hang until the timeout); /relay/stats counts both.
GET /relay/stats: per plugin, calls per action and outcome, each crawl's messages (statuses, final item count),
the longest line, storage operations, invocations dropped after their session ended, oversize lines, the longest
heartbeat gap, the plugin's last stderr lines.
"""
import datetime, hashlib, io, json, os, queue, shutil, sys, threading, time, urllib.parse, uuid
from http.server import ThreadingHTTPServer

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.normpath(os.path.join(HERE, "../../../../shared/dify")))
import daemon_stub  # noqa: E402
import plugin_stdio as fakedaemon  # noqa: E402  (the stdio side of the daemon)

TIMEOUT = int(os.environ.get("PLUGIN_MAX_EXECUTION_TIMEOUT") or 600)
# route -> (access type, action, request fields of the bound struct, required ones, response check)
ROUTES = {
    "datasource/validate_credentials": ("datasource", "validate_datasource_credentials",
                                        ["credentials", "credential_type", "provider"], ["provider"], "bool"),
    "datasource/get_website_crawl": ("datasource", "invoke_website_datasource_get_crawl",
                                     ["credentials", "credential_type", "provider", "datasource",
                                      "datasource_parameters"], ["provider", "datasource", "datasource_parameters"],
                                     "crawl"),
    "datasource/online_drive_browse_files": ("datasource", "invoke_online_drive_browse_files",
                                             ["credentials", "credential_type", "provider", "datasource", "request"],
                                             ["provider", "datasource", "request"], "drive"),
    "datasource/online_drive_download_file": ("datasource", "invoke_online_drive_download_file",
                                              ["credentials", "credential_type", "provider", "datasource", "request"],
                                              ["provider", "datasource", "request"], "chunk"),
    "tool/validate_credentials": ("tool", "validate_tool_credentials", ["provider", "credentials"], ["provider"],
                                  "bool"),
    "tool/invoke": ("tool", "invoke_tool", ["provider", "tool", "tool_parameters", "credentials", "credential_type"],
                    ["provider", "tool"], "tool"),
}
TOOL_CHUNK_TYPES = {"text", "file", "blob", "blob_chunk", "json", "link", "image", "image_link", "binary_link",
                    "variable", "log", "retriever_resources"}


def go_json(obj):
    """JSON as Go's encoding/json writes it: compact, HTML characters escaped, UTF-8 kept."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(a, b)
    return s


def daemon_error(message, error_type, code=-500):
    """exception.genericError.ToResponse(): the error object travels as a JSON string in `message`."""
    inner = go_json({"message": message, "error_type": error_type, "args": None})
    return '{"code":%d,"message":%s,"data":null}' % (code, go_json(inner))


def iso(t):
    return t.isoformat().replace("+00:00", "Z") if isinstance(t, datetime.datetime) else t


def plain(obj):
    """YAML values as JSON values (YAML reads created_at as a datetime)."""
    return json.loads(json.dumps(obj, default=iso))


class Store(dict):
    """A plugin's storage: bytes by key, written through to a JSON file shared by all plugins (hex values)."""
    lock = threading.Lock()

    def __init__(self, path, plugin_id):
        super().__init__()
        self.path, self.plugin_id = path, plugin_id
        if path and os.path.exists(path):
            with open(path) as f:
                self.update({k: bytes.fromhex(v) for k, v in json.load(f).get(plugin_id, {}).items()})

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.save()

    def pop(self, key, *default):
        value = super().pop(key, *default)
        self.save()
        return value

    def save(self):
        if not self.path:
            return
        with Store.lock:
            allp = {}
            if os.path.exists(self.path):
                with open(self.path) as f:
                    allp = json.load(f)
            allp[self.plugin_id] = {k: v.hex() for k, v in self.items()}
            with open(self.path + ".tmp", "w") as f:
                json.dump(allp, f)
            os.replace(self.path + ".tmp", self.path)


class RelayedPlugin:
    def __init__(self, decl_dir, binary, work_root, storage_path):
        self.decl_dir, self.binary = os.path.abspath(decl_dir), os.path.abspath(binary)
        load = lambda rel: yaml.safe_load(open(os.path.join(self.decl_dir, rel), encoding="utf-8"))
        self.manifest = load("manifest.yaml")
        self.plugin_id = "%s/%s" % (self.manifest["author"], self.manifest["name"])
        files = ["manifest.yaml"]
        self.datasource = self.tool = None
        for rel in (self.manifest.get("plugins") or {}).get("datasources") or []:
            decl = load(rel)
            files += [rel] + list(decl.get("datasources") or [])
            decl["datasources"] = [load(r) for r in decl.get("datasources") or []]
            self.datasource = self._provider(decl)
        for rel in (self.manifest.get("plugins") or {}).get("tools") or []:
            decl = load(rel)
            files += [rel] + list(decl.get("tools") or [])
            decl["tools"] = [load(r) for r in decl.get("tools") or []]
            self.tool = self._provider(decl)
        self.endpoint_group, self.endpoints = None, {}  # hook id -> endpoint
        for rel in (self.manifest.get("plugins") or {}).get("endpoints") or []:
            group = load(rel)
            members = [r for r in group.get("endpoints") or [] if isinstance(r, str)]
            files += [rel] + members
            group["endpoints"] = [load(r) for r in members]
            self.endpoint_group = plain(group)
        digest = hashlib.sha256()
        for rel in files:
            digest.update(open(os.path.join(self.decl_dir, rel), "rb").read())
        digest.update(open(self.binary, "rb").read())
        self.checksum = digest.hexdigest()
        self.unique_identifier = "%s:%s@%s" % (self.plugin_id, self.manifest["version"], self.checksum)
        self.workdir = os.path.join(work_root, self.manifest["author"],
                                    "%s-%s@%s" % (self.manifest["name"], self.manifest["version"], self.checksum[:16]))
        for rel in files + ["_assets"]:  # what the package would hold, the binary aside
            src, dst = os.path.join(self.decl_dir, rel), os.path.join(self.workdir, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True)
            elif os.path.exists(src):
                shutil.copyfile(src, dst)
        self.store = Store(storage_path, self.plugin_id)
        self.proc, self.start_lock, self.active = None, threading.Lock(), set()
        self.installed_at = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        self.stats = {"plugin_id": self.plugin_id, "unique_identifier": self.unique_identifier,
                      "workdir": self.workdir, "starts": 0, "calls": {}, "late_invocations_dropped": [],
                      "oversize_lines": 0, "largest_line_bytes": 0, "exits": [], "crawls": []}

    @staticmethod
    def _provider(decl):
        decl = plain(decl)
        schema = decl.get("credentials_schema") or []
        if isinstance(schema, dict):  # the map form: name -> config
            schema = [dict(v, name=k) for k, v in schema.items()]
        decl["credentials_schema"] = schema
        decl.setdefault("oauth_schema", None)
        for item in decl.get("datasources", []) + decl.get("tools", []):
            item["parameters"] = item.get("parameters") or []
        return decl

    # --- the process ------------------------------------------------------------------------------
    def plugin(self):
        """The running process, started (and restarted after an exit) on demand; None until it heartbeats."""
        with self.start_lock:
            if self.proc is None or self.proc.p.poll() is not None:
                if self.proc is not None:
                    self.stats["exits"].append(self.proc.p.returncode)
                self.proc = fakedaemon.Plugin(self.binary, self.workdir, env={"INSTALL_METHOD": "local"},
                                              storage=self.store, cmd=[self.binary])
                self.proc.hook = self._late_invocation
                self.stats["starts"] += 1
                sys.stderr.write("relay: started %s pid %d in %s\n" % (self.plugin_id, self.proc.p.pid, self.workdir))
            proc = self.proc
        return proc if proc.wait_heartbeat(120) else None

    def _late_invocation(self, plugin, sid, inv, reply):
        """fakedaemon hook: an invocation whose session has ended gets no answer, as with the real daemon."""
        if sid in self.active:
            return False
        req = inv.get("request") or {}
        self.stats["late_invocations_dropped"].append([inv.get("type"), req.get("opt"), req.get("key")])
        sys.stderr.write("relay: %s: dropped a %s invocation of ended session %s\n" % (self.plugin_id, inv.get("type"), sid))
        return True

    # --- declarations (management routes) -----------------------------------------------------------
    def row(self, tenant, **extra):
        rid = str(uuid.uuid5(uuid.NAMESPACE_URL, self.plugin_id + "/" + tenant))
        return dict({"id": rid, "created_at": self.installed_at, "updated_at": self.installed_at,
                     "tenant_id": tenant, "plugin_unique_identifier": self.unique_identifier,
                     "plugin_id": self.plugin_id}, **extra)

    def declaration(self):
        decl = plain(self.manifest)
        decl.update({"verified": False, "repo": None, "icon_dark": decl.get("icon_dark") or ""})
        decl["plugins"] = {k: list((self.manifest.get("plugins") or {}).get(k) or [])
                           for k in ("tools", "models", "endpoints", "datasources", "triggers", "agent_strategies")}
        if self.datasource:
            decl["datasource"] = self.datasource
        if self.tool:
            decl["tool"] = self.tool
        if self.endpoint_group:
            decl["endpoint"] = self.endpoint_group
        return decl

    # --- endpoints ------------------------------------------------------------------------------------
    def setup_endpoint(self, tenant, body):
        now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        hook = uuid.uuid4().hex[:16]
        self.endpoints[hook] = {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "tenant_id": tenant,
                                "plugin_id": self.plugin_id, "expired_at": now, "name": body.get("name") or "",
                                "settings": body.get("settings") or {}, "enabled": True, "hook_id": hook,
                                "declaration": self.endpoint_group}
        return True

    def listed_endpoints(self, tenant):
        hidden = {c["name"] for c in self.endpoint_group["settings"] if c.get("type") == "secret-input"}
        return [dict(e, settings={k: ("[__HIDDEN__]" if k in hidden else v) for k, v in e["settings"].items()})
                for e in self.endpoints.values() if e["tenant_id"] == tenant]

    def invoke_endpoint(self, handler, endpoint, path, raw_body):
        """`/e/<hook>/<path>`: the request relayed to the plugin; its answer written back."""
        u = urllib.parse.urlparse(handler.path)
        host = handler.headers.get("Host") or "127.0.0.1"
        lines = ["%s %s%s HTTP/1.1" % (handler.command, "/" + path, "?" + u.query if u.query else ""), "Host: " + host]
        for name, value in handler.headers.items():
            if name.lower() in ("host", "content-length", "transfer-encoding", "x-forwarded-for", "x-real-ip",
                                "x-forwarded", "x-original-forwarded-for", "x-original-url", "x-original-host"):
                continue
            lines.append("%s: %s" % (name, value))
        lines += ["Content-Length: %d" % len(raw_body), "Dify-Hook-Id: " + endpoint["hook_id"],
                  "Dify-Hook-Url: http://%s/e/%s/%s" % (host, endpoint["hook_id"], path)]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + raw_body
        plugin = self.plugin()
        if plugin is None:
            return handler.send_text(500, daemon_error("the plugin sent no heartbeat", "PluginDaemonInternalServerError"))
        sid, q = str(uuid.uuid4()), queue.Queue()
        with plugin.lock:
            plugin.sessions[sid] = q
        self.active.add(sid)
        plugin.write({"session_id": sid, "conversation_id": None, "message_id": None, "app_id": None,
                      "endpoint_id": endpoint["id"], "context": None, "event": "request",
                      "data": {"user_id": "", "type": "endpoint", "action": "invoke_endpoint",
                               "raw_http_request": raw.hex(), "settings": endpoint["settings"]}})
        status, headers, body, outcome = 500, {}, b"", "timeout"
        deadline = time.time() + TIMEOUT
        try:
            while time.time() < deadline:
                try:
                    msg = q.get(timeout=1.0)
                except queue.Empty:
                    if plugin.p.poll() is not None:
                        outcome = "plugin_exited"
                        break
                    continue
                if msg["type"] == "stream":
                    chunk = msg["data"] or {}
                    status = chunk.get("status") or status
                    headers.update(chunk.get("headers") or {})
                    body += bytes.fromhex(chunk.get("result") or "")
                elif msg["type"] in ("end", "error"):
                    outcome = msg["type"]
                    if msg["type"] == "error":
                        status, body = 500, go_json(msg["data"]).encode()
                    break
        finally:
            self.active.discard(sid)
            with plugin.lock:
                plugin.sessions.pop(sid, None)
            self.count("invoke_endpoint", outcome)
        handler.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def installation(self, tenant):
        return self.row(tenant, name=self.manifest["name"], installation_id=self.row(tenant)["id"],
                        endpoints_setups=0, endpoints_active=0, runtime_type="local", source="package", meta={},
                        version=self.manifest["version"], checksum=self.checksum, declaration=self.declaration())

    # --- dispatch -------------------------------------------------------------------------------------
    def count(self, action, outcome):
        calls = self.stats["calls"].setdefault(action, {})
        calls[outcome] = calls.get(outcome, 0) + 1

    def dispatch(self, handler, tenant, route, body):
        kind, action, fields, required, check = ROUTES[route]
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        missing = [f for f in required if data.get(f) in (None, "")]
        if missing or not tenant:
            self.count(action, "bad_request")
            return handler.send_text(400, daemon_error("Key: 'data.%s' Error:Field validation failed on the 'required'"
                                                      " tag" % (missing or ["tenant_id"])[0], "PluginDaemonBadRequestError", -400))
        request = {"user_id": body.get("user_id") or "", "type": kind, "action": action}
        for f in fields:  # the bound struct: unknown keys dropped, absent ones zero (credential_type omitempty)
            if f == "credential_type" and not data.get(f):
                continue
            request[f] = data.get(f)
        handler.sse_begin()
        plugin = self.plugin()
        if plugin is None:
            self.count(action, "no_heartbeat")
            return handler.sse_end(daemon_error("failed to write request: the plugin sent no heartbeat",
                                                "PluginDaemonInternalServerError"))
        sid = str(uuid.uuid4())
        q = queue.Queue()
        with plugin.lock:
            plugin.sessions[sid] = q
        self.active.add(sid)
        oversize_before = sum(1 for b in plugin.bad if b[0] == "oversize")
        log_data = {k: ("<%d keys>" % len(v) if k == "credentials" and isinstance(v, dict) else v)
                    for k, v in request.items()}
        sys.stderr.write("relay: %s %s session %s %s\n" % (self.plugin_id, action, sid, json.dumps(log_data)[:400]))
        plugin.write({"session_id": sid, "conversation_id": body.get("conversation_id"),
                      "message_id": body.get("message_id"), "app_id": body.get("app_id"),
                      "endpoint_id": body.get("endpoint_id"), "context": body.get("context"),
                      "event": "request", "data": request})
        deadline, outcome, final = time.time() + TIMEOUT, "timeout", None
        crawl = {"session": sid, "messages": 0, "statuses": {}} if check == "crawl" else None
        try:
            while True:
                try:
                    msg = q.get(timeout=min(1.0, max(0.01, deadline - time.time())))
                except queue.Empty:
                    msg = None
                oversize = sum(1 for b in plugin.bad if b[0] == "oversize")
                if oversize > oversize_before:
                    self.stats["oversize_lines"] += oversize - oversize_before
                    outcome, final = "oversize", daemon_error(
                        "relay: the plugin wrote a line of 5242880 bytes or more; the real daemon kills it "
                        "(bufio.Scanner: token too long) and this request hangs until killed by timeout",
                        "PluginDaemonInternalServerError")
                    break
                if msg is None:
                    if plugin.p.poll() is not None:
                        outcome, final = "plugin_exited", daemon_error(
                            "relay: the plugin process exited (code %s)" % plugin.p.returncode,
                            "PluginDaemonInternalServerError")
                        break
                    if time.time() >= deadline:
                        final = daemon_error("killed by timeout", "PluginDaemonInternalServerError")
                        break
                    continue
                if msg["type"] == "stream":
                    chunk, problem = self.shape(check, msg["data"])
                    if problem:
                        outcome = "unmarshal_error"
                        final = daemon_error(go_json({"error_type": "unmarshal_error",
                                                      "message": "unmarshal json failed: " + problem}),
                                             "PluginInvokeError")
                        break
                    if crawl is not None:  # what the plugin sent, to compare with what Dify passes on
                        result = chunk["result"] or {}
                        st = str(result.get("status"))
                        crawl["messages"] += 1
                        crawl["statuses"][st] = crawl["statuses"].get(st, 0) + 1
                        crawl.update(last_status=st, total=result.get("total"), completed=result.get("completed"),
                                     items=len(result.get("web_info_list") or []))
                    handler.sse_data('{"code":0,"message":"success","data":%s}' % go_json(chunk))
                elif msg["type"] == "end":
                    outcome = "end"
                    break
                elif msg["type"] == "error":
                    e = msg["data"] if isinstance(msg["data"], dict) else None
                    args = e.get("args") if e else None
                    if e is None or not (args is None or (isinstance(args, dict) and len(args) <= 10)):
                        continue  # ErrorResponse fails to parse/validate: the daemon skips the message
                    outcome = "error"
                    final = daemon_error(go_json({"args": args, "error_type": e.get("error_type", ""),
                                                  "message": e.get("message", "")}), "PluginInvokeError")
                    break
                else:
                    outcome = "unknown_stream_message_type"
                    final = daemon_error(go_json({"error_type": "unknown_stream_message_type",
                                                  "message": "unknown stream message type: " + str(msg["type"])}),
                                         "PluginInvokeError")
                    break
            handler.sse_end(final)
        except (BrokenPipeError, ConnectionResetError):
            outcome = "client_disconnect"  # the daemon closes the listener; later output is dropped
        finally:
            self.active.discard(sid)
            with plugin.lock:
                plugin.sessions.pop(sid, None)
            self.count(action, outcome)
            lines, plugin.lines[:] = list(plugin.lines), []  # fakedaemon keeps every line: measure, then forget
            self.stats["largest_line_bytes"] = max([self.stats["largest_line_bytes"]] + [len(l) + 1 for l in lines])
            if crawl is not None:
                crawl["outcome"] = outcome
                self.stats["crawls"].append(crawl)
            sys.stderr.write("relay: %s %s session %s -> %s\n" % (self.plugin_id, action, sid, outcome))

    @staticmethod
    def shape(check, data):
        """(chunk as the daemon re-serialises it, problem) for one stream message (json.Unmarshal + validator)."""
        if not isinstance(data, dict):
            return None, "cannot unmarshal %s into the response struct" % type(data).__name__
        if check == "bool":
            result = data.get("result", False)
            if not isinstance(result, bool):
                return None, "cannot unmarshal %s into Go struct field .result of type bool" % type(result).__name__
            return {"result": result}, ""
        if check == "crawl":
            result = data.get("result")
            if result is not None and not isinstance(result, dict):
                return None, "cannot unmarshal %s into Go struct field WebsiteCrawlChunk.result of type " \
                             "map[string]interface {}" % type(result).__name__
            return {"result": result}, ""
        if check == "drive":  # GetOnlineDriveBrowseFilesResponse: result required, each bucket's files
            result = data.get("result")
            if not isinstance(result, list) or not result:
                return None, "Key: 'GetOnlineDriveBrowseFilesResponse.Result' Error:Field validation for " \
                             "'Result' failed on the 'required' tag"
            buckets = []
            for b in result:
                if not isinstance(b, dict) or not isinstance(b.get("files"), list):
                    return None, "cannot unmarshal into Go struct field OnlineDriveFileBucket.result.files"
                files = [{"id": f.get("id"), "name": f.get("name"), "size": f.get("size") or 0,
                          "type": f.get("type")} for f in b["files"] if isinstance(f, dict)]
                buckets.append({"bucket": b.get("bucket"), "files": files,
                                "is_truncated": bool(b.get("is_truncated")),
                                "next_page_parameters": b.get("next_page_parameters")})
            return {"result": buckets}, ""
        chunk = {"type": data.get("type"), "message": data.get("message"), "meta": data.get("meta")}
        for k in ("message", "meta"):
            if chunk[k] is not None and not isinstance(chunk[k], dict):
                return None, "cannot unmarshal %s into Go struct field ToolResponseChunk.%s" % (type(chunk[k]).__name__, k)
        if not isinstance(chunk["type"], str) or chunk["type"] not in TOOL_CHUNK_TYPES:
            return None, "Key: 'ToolResponseChunk.Type' Error:Field validation for 'Type' failed"
        return chunk, ""

    def stats_now(self):
        s = dict(self.stats)
        p = self.proc
        if p is not None:
            hb = p.heartbeats
            s.update(pid=p.p.pid, running=p.p.poll() is None, heartbeats=len(hb),
                     max_heartbeat_gap_s=round(max([b - a for a, b in zip(hb, hb[1:])] or [0]), 1),
                     storage_ops=len(p.storage_ops), storage_keys=len(self.store),
                     storage_bytes=sum(len(v) for v in self.store.values()),
                     stderr_tail=[l.decode(errors="replace").rstrip()[:300] for l in p.stderr[-15:]])
        return s


class Handler(daemon_stub.H):
    plugins = {}  # plugin id -> RelayedPlugin

    def send_json(self, obj, status=200):
        self.send_text(status, go_json(obj))

    def send_text(self, status, text, ctype="application/json"):
        data = text.encode() if isinstance(text, str) else text
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def sse_begin(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def sse_data(self, text):
        data = b"data: " + text.encode() + b"\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def sse_end(self, final=None):
        if final:
            self.sse_data(final)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def ok(self, data):
        self.send_json({"code": 0, "message": "success", "data": data})

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        parts = u.path.strip("/").split("/")
        if u.path == "/relay/stats":
            return self.send_json({pid: p.stats_now() for pid, p in self.plugins.items()})
        if len(parts) >= 2 and parts[0] == "e":
            for p in self.plugins.values():
                if parts[1] in p.endpoints and p.endpoints[parts[1]]["enabled"]:
                    return p.invoke_endpoint(self, p.endpoints[parts[1]], "/".join(parts[2:]), raw)
            return self.send_text(404, daemon_error("endpoint not found", "PluginDaemonBadRequestError", -404))
        if len(parts) >= 4 and parts[0] == "plugin":
            tenant, group, rest = parts[1], parts[2], "/".join(parts[3:])
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            mine = list(self.plugins.values())
            if group == "dispatch" and rest in ROUTES and self.headers.get("X-Plugin-ID") in self.plugins:
                return self.plugins[self.headers["X-Plugin-ID"]].dispatch(self, tenant, rest, body)
            if group == "asset":
                for p in mine:
                    path = os.path.join(p.workdir, "_assets", os.path.basename(rest))
                    if os.path.isfile(path):
                        return self.send_text(200, open(path, "rb").read(), "image/svg+xml" if path.endswith(".svg")
                                              else "application/octet-stream")
            if group == "endpoint":
                if rest == "setup":
                    wanted = body.get("plugin_unique_identifier")
                    for p in mine:
                        if p.unique_identifier == wanted and p.endpoint_group:
                            return self.ok(p.setup_endpoint(tenant, body))
                    return self.send_text(200, daemon_error("plugin not found", "PluginNotFoundError", -404))
                if rest in ("list", "list/plugin"):
                    rows = [e for p in mine if p.endpoint_group and (rest == "list" or p.plugin_id == q.get("plugin_id"))
                            for e in p.listed_endpoints(tenant)]
                    return self.ok(rows)
            if group == "management":
                if rest == "list":
                    rows = [p.installation(tenant) for p in mine]
                    return self.ok({"list": rows, "total": len(rows)})
                if rest == "installation/fetch/batch":
                    ids = set(body.get("plugin_ids") or [])
                    return self.ok([p.installation(tenant) for p in mine if p.plugin_id in ids])
                if rest in ("datasources", "tools"):
                    key = "datasource" if rest == "datasources" else "tool"
                    return self.ok([p.row(tenant, provider=getattr(p, key)["identity"]["name"], declaration=getattr(p, key))
                                    for p in mine if getattr(p, key)])
                if rest in ("datasource", "tool") and q.get("plugin_id") in self.plugins:
                    p = self.plugins[q["plugin_id"]]
                    decl = getattr(p, rest)
                    if not decl or decl["identity"]["name"] != q.get("provider"):
                        return self.send_text(200, daemon_error("plugin not found", "PluginNotFoundError", -404))
                    return self.ok(p.row(tenant, provider=decl["identity"]["name"], declaration=decl))
        # everything else: exactly what daemon_stub.py answers
        conn, self.rfile = self.rfile, io.BytesIO(raw)
        try:
            return daemon_stub.H._any(self)
        finally:
            self.rfile = conn

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any


def main(argv):
    port, plugins, work, storage = int(argv[1]), [], None, None
    i = 2
    while i < len(argv):
        if argv[i] == "--plugin":
            plugins.append((argv[i + 1], argv[i + 2]))
            i += 3
        elif argv[i] in ("--work", "--storage"):
            work, storage = (argv[i + 1], storage) if argv[i] == "--work" else (work, argv[i + 1])
            i += 2
        else:
            sys.exit(__doc__)
    if not plugins:
        for pair in filter(None, os.environ.get("DIFY_RELAY_PLUGINS", "").split(",")):
            d, _, b = pair.rpartition(":")
            plugins.append((d, b))
    work = work or os.path.join(os.environ.get("TMPDIR", "/tmp"), "dify-relay-plugins")
    for d, b in plugins:
        p = RelayedPlugin(d, b, work, storage)
        Handler.plugins[p.plugin_id] = p
        threading.Thread(target=p.plugin, daemon=True).start()
    sys.stderr.write("relay: port %d, plugins %s\n" % (port, ", ".join(Handler.plugins) or "none"))
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv)

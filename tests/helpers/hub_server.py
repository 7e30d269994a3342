"""A localhost server speaking enough of the Hugging Face Hub HTTP API for the real clients to work against it.

The real `huggingface_hub`, `datasets` and `transformers` clients are pointed at it through ``HF_ENDPOINT`` (see
`HubServer.client_environment` and `HubServer.point_clients_here`). It keeps model and dataset repositories in
memory with a linear history per branch, and understands the routes the clients use to create repositories,
commit files (NDJSON with base64 content), list and describe them, and download files (with ``Range``).

Test hooks: `HubServer.fail_with` answers chosen routes with an error status, `HubServer.recover` stops that,
`HubServer.stop` / `HubServer.start` take the listening socket down and bring it back on the same port.
Requests the server does not understand are answered 404 with ``X-Error-Code: RouteNotImplemented``, printed
to stderr and kept in `HubServer.unknown_requests`, so gaps in the emulation are visible.

Files matching the Hub's default LFS patterns (safetensors, parquet, arrow, bin, ...) or over 10 MB go through the
LFS batch API (basic single-part transfer); everything else is committed inline. There is no Xet: clients must
run with ``HF_HUB_DISABLE_XET=1``. Pull requests, tags other than branches, and the dataset viewer's parquet conversion
are not provided.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_USER = "test-user"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gz", ".h5", ".joblib", ".mlmodel", ".model", ".msgpack",
    ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt", ".pth", ".rar", ".safetensors",
    ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024


def is_lfs_path(path: str, size: int) -> bool:
    """Whether the Hub's default .gitattributes (or the 10 MB limit) sends this file through LFS."""
    return path.lower().endswith(LFS_SUFFIXES) or size > LFS_SIZE_THRESHOLD


def lfs_pointer(content: bytes) -> bytes:
    oid = hashlib.sha256(content).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(content)}\n".encode()


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    files: dict[str, bytes]
    lfs: frozenset[str] = frozenset()
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        if revision.startswith("refs/heads/"):
            revision = revision[len("refs/heads/") :]
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class HubError(Exception):
    """An error answer: HTTP status, the Hub's ``X-Error-Code`` and a message."""

    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class HubState:
    """Repositories and history, guarded by one lock (requests arrive on many threads)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self._counter = 0

    def _new_oid(self, seed: str) -> str:
        self._counter += 1
        return hashlib.sha1(f"{seed}:{self._counter}:{time.time_ns()}".encode()).hexdigest()

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> tuple[Repo, bool]:
        with self.lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                return self.repos[key], False
            repo = Repo(repo_type, repo_id, private)
            # The Hub creates every repository with an initial commit holding a .gitattributes file.
            oid = self._new_oid(repo_id)
            repo.commits[oid] = Commit(oid, None, "initial commit", "",
                                       {".gitattributes": b"*.safetensors filter=lfs\n"})
            repo.branches["main"] = oid
            self.repos[key] = repo
            return repo, True

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository Not Found for url: {repo_type}s/{repo_id}.")
        return repo

    def get_commit(self, repo: Repo, revision: str) -> Commit:
        with self.lock:
            commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
        return commit

    def commit(self, repo: Repo, branch: str, title: str, description: str, operations: list[dict]) -> Commit:
        with self.lock:
            branch = unquote(branch)
            if branch not in repo.branches:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {branch}")
            parent = repo.commits[repo.branches[branch]]
            files = dict(parent.files)
            lfs = set(parent.lfs)
            for key, value in operations:
                path = value["path"].lstrip("/")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, None, f"unsupported encoding {value.get('encoding')!r}")
                    files[path] = base64.b64decode(value["content"])
                    lfs.discard(path)
                elif key == "lfsFile":
                    blob = self.lfs_objects.get(value["oid"])
                    if blob is None:
                        raise HubError(422, None, f"LFS object {value['oid']} for {path} was never uploaded")
                    files[path] = blob
                    lfs.add(path)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
                    del files[path]
                    lfs.discard(path)
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for name in [n for n in files if n.startswith(prefix)]:
                        del files[name]
                        lfs.discard(name)
                else:
                    raise HubError(422, None, f"commit operation {key!r} is not supported by this server")
            oid = self._new_oid(repo.repo_id)
            commit = Commit(oid, parent.oid, title, description, files, frozenset(lfs))
            repo.commits[oid] = commit
            repo.branches[branch] = oid
            return commit


def _tree_entries(commit: Commit, base: str, recursive: bool) -> list[dict] | None:
    """Entries under folder ``base`` ('' for the root), as the tree API lists them; None if no such folder."""
    files = commit.files
    prefix = base.strip("/") + "/" if base.strip("/") else ""
    entries: dict[str, dict] = {}
    found = not prefix
    for path in sorted(files):
        if not path.startswith(prefix):
            continue
        found = True
        rest = path[len(prefix) :].split("/")
        depth = len(rest) if recursive else 1
        for i in range(1, min(depth, len(rest) - 1) + 1):
            folder = prefix + "/".join(rest[:i])
            entries.setdefault(folder, _folder_entry(folder, files))
        if recursive or len(rest) == 1:
            entries[path] = _file_entry(commit, path)
    if not found:
        return None
    return sorted(entries.values(), key=lambda e: (e["path"].count("/"), e["type"] != "directory", e["path"]))


def _file_entry(commit: Commit, path: str) -> dict:
    content = commit.files[path]
    if path not in commit.lfs:
        return {"type": "file", "oid": git_blob_sha1(content), "size": len(content), "path": path}
    pointer = lfs_pointer(content)
    lfs = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": len(pointer)}
    return {"type": "file", "oid": git_blob_sha1(pointer), "size": len(content), "path": path, "lfs": lfs}


def _folder_entry(path: str, files: dict[str, bytes]) -> dict:
    inner = "".join(sorted(f for f in files if f.startswith(path + "/")))
    return {"type": "directory", "oid": hashlib.sha1(inner.encode()).hexdigest(), "size": 0, "path": path}


def _card_data(files: dict[str, bytes]) -> dict | None:
    readme = files.get("README.md")
    if readme is None:
        return None
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme.decode("utf-8", "replace"), re.DOTALL)
    if not match:
        return None
    try:
        import yaml

        data = yaml.safe_load(match.group(1))
    except Exception:  # a card with broken metadata is served without cardData, as the Hub does
        return None
    return data if isinstance(data, dict) else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    # -- plumbing -------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def _base_url(self) -> str:
        return self.server.owner.url

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str | None = None):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.server.owner._record(self.command, self.path, status)

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers, "application/json")

    def _error(self, err: HubError):
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json(err.status, {"error": err.message}, headers)

    def _dispatch(self):
        owner = self.server.owner
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qs(split.query)
        body = self._read_body() if self.command in ("POST", "PUT", "DELETE") else b""
        route = _match_route(self.command, path)
        name = route[0] if route else "unknown"
        injected = owner._injected_status(name)
        if injected is not None:
            return self._json(
                injected,
                {"error": f"Injected failure ({injected}) on route {name}"},
                {"X-Error-Message": f"Injected failure on route {name}", "Retry-After": owner.retry_after},
            )
        if route is None:
            owner._unknown(self.command, self.path)
            return self._error(HubError(404, "RouteNotImplemented", f"{self.command} {path} is not emulated"))
        handler_name, params = route
        try:
            getattr(self, "_route_" + handler_name.replace("-", "_"))(params, query, body)
        except HubError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # -- routes ---------------------------------------------------------------------------------------------
    def _route_whoami(self, params, query, body):
        self._json(200, {"type": "user", "name": DEFAULT_USER, "fullname": "Test User", "orgs": [], "auth": {}})

    def _route_agent_harnesses(self, params, query, body):
        # huggingface_hub fetches this registry to label its user agent; an empty one labels nothing.
        self._json(200, {"standardEnvVars": [], "harnesses": {}})

    def _route_validate_yaml(self, params, query, body):
        content = json.loads(body or b"{}").get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
        if match:
            import yaml

            try:
                yaml.safe_load(match.group(1))
            except yaml.YAMLError as err:
                return self._json(400, {"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []})
        self._json(200, {"errors": [], "warnings": []})

    def _route_create(self, params, query, body):
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type not in _PREFIX:
            raise HubError(400, None, f"invalid repo type {repo_type!r}")
        namespace = payload.get("organization") or DEFAULT_USER
        repo_id = f"{namespace}/{payload['name']}"
        private = payload.get("private") or payload.get("visibility") == "private"
        repo, created = self.server.owner.state.create_repo(repo_type, repo_id, bool(private))
        answer = {"url": f"{self._base_url()}/{_PREFIX[repo_type]}{repo_id}", "name": repo_id, "id": repo_id}
        if created:
            return self._json(200, answer)
        answer["error"] = "You already created this model repo"
        self._json(409, answer, {"X-Error-Message": answer["error"]})

    def _route_delete(self, params, query, body):
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or DEFAULT_USER}/{payload['name']}"
        state = self.server.owner.state
        with state.lock:
            if state.repos.pop((repo_type, repo_id), None) is None:
                raise HubError(404, "RepoNotFound", f"Repository Not Found: {repo_id}")
        self._json(200, {})

    def _repo(self, params) -> Repo:
        return self.server.owner.state.get_repo(REPO_TYPES[params["kind"]], params["repo"])

    def _route_info(self, params, query, body):
        repo = self._repo(params)
        commit = self.server.owner.state.get_commit(repo, params.get("rev") or "main")
        siblings = []
        for path in sorted(commit.files):
            entry = _file_entry(commit, path)
            sibling = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
            if "lfs" in entry:
                sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": entry["size"],
                                  "pointerSize": entry["lfs"]["pointerSize"]}
            siblings.append(sibling)
        info = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date)),
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date)),
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(c) for c in commit.files.values()),
        }
        card = _card_data(commit.files)
        if card is not None:
            info["cardData"] = card
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            info["library_name"] = (card or {}).get("library_name")
        self._json(200, info)

    def _route_refs(self, params, query, body):
        repo = self._repo(params)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in repo.branches.items()]
        self._json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def _route_commits(self, params, query, body):
        repo = self._repo(params)
        commit: Commit | None = self.server.owner.state.get_commit(repo, params["rev"])
        history = []
        while commit is not None:
            history.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": commit.description,
                    "authors": [{"user": DEFAULT_USER}],
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date)),
                }
            )
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._json(200, history)

    def _route_tree(self, params, query, body):
        repo = self._repo(params)
        commit = self.server.owner.state.get_commit(repo, params["rev"])
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = _tree_entries(commit, params.get("path") or "", recursive)
        if entries is None:
            raise HubError(404, "EntryNotFound", f"{params.get('path')} does not exist on {params['rev']}")
        self._json(200, entries)

    def _route_paths_info(self, params, query, body):
        repo = self._repo(params)
        commit = self.server.owner.state.get_commit(repo, params["rev"])
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        answer = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                answer.append(_file_entry(commit, path))
            elif any(f.startswith(path + "/") for f in commit.files):
                answer.append(_folder_entry(path, commit.files))
        self._json(200, answer)

    def _route_preupload(self, params, query, body):
        repo = self._repo(params)
        commit = self.server.owner.state.get_commit(repo, params["rev"])
        files = json.loads(body or b"{}").get("files", [])
        answer = []
        for entry in files:
            path, existing = entry["path"], commit.files.get(entry["path"])
            mode = "lfs" if is_lfs_path(path, int(entry.get("size") or 0)) else "regular"
            oid = None
            if existing is not None:
                oid = hashlib.sha256(existing).hexdigest() if mode == "lfs" else git_blob_sha1(existing)
            answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": answer, "commitOid": commit.oid})

    def _route_commit(self, params, query, body):
        repo = self._repo(params)
        if query.get("create_pr", ["0"])[0] in ("1", "true"):
            raise HubError(422, None, "pull requests are not supported by this server")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, None, "the commit payload must start with a header line")
        header = lines[0]["value"]
        operations = [(line["key"], line["value"]) for line in lines[1:]]
        parent = header.get("parentCommit")
        state = self.server.owner.state
        with state.lock:
            if parent is not None and repo.branches.get(unquote(params["rev"])) != parent:
                raise HubError(412, None, "parentCommit is not the head of the branch")
            commit = state.commit(repo, params["rev"], header.get("summary", ""), header.get("description", ""),
                                  operations)
        url = f"{self._base_url()}/{_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})

    def _route_lfs_batch(self, params, query, body):
        self._repo(params)
        payload = json.loads(body or b"{}")
        if payload.get("operation") != "upload":
            raise HubError(422, None, "only LFS uploads are supported by this server")
        objects = []
        for obj in payload.get("objects", []):
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server.owner.state.lfs_objects:
                answer["actions"] = {"upload": {"href": f"{self._base_url()}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(answer)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def _route_lfs_upload(self, params, query, body):
        if hashlib.sha256(body).hexdigest() != params["oid"]:
            raise HubError(400, None, f"uploaded content does not match LFS oid {params['oid']}")
        with self.server.owner.state.lock:
            self.server.owner.state.lfs_objects[params["oid"]] = body
        self._send(200)

    def _route_resolve(self, params, query, body):
        repo = self._repo(params)
        commit = self.server.owner.state.get_commit(repo, params["rev"])
        path = params["path"]
        if path not in commit.files:
            raise HubError(404, "EntryNotFound", f"Entry not found: {path}")
        content = commit.files[path]
        entry = _file_entry(commit, path)
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{entry["oid"]}"',
            "Accept-Ranges": "bytes",
            "Last-Modified": formatdate(commit.date, usegmt=True),
        }
        if "lfs" in entry:
            headers["X-Linked-Etag"] = f'"{entry["lfs"]["oid"]}"'
            headers["X-Linked-Size"] = len(content)
        status, payload = 200, content
        range_header = self.headers.get("Range")
        if range_header and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if not match:
                raise HubError(416, None, f"bad Range {range_header!r}")
            start_text, end_text = match.groups()
            if start_text == "":
                start, end = max(0, len(content) - int(end_text)), len(content) - 1
            else:
                start = int(start_text)
                end = min(int(end_text), len(content) - 1) if end_text else len(content) - 1
            if start >= len(content) and len(content) > 0:
                headers["Content-Range"] = f"bytes */{len(content)}"
                return self._send(416, b"", headers)
            status, payload = 206, content[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        headers["Content-Length"] = len(payload)
        self._send(status, payload, headers, "application/octet-stream")


# (methods, route name, pattern). Repo ids are always "namespace/name" here.
_REPO = r"(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
_ROUTES: list[tuple[tuple[str, ...], str, re.Pattern]] = [
    (("GET",), "whoami", re.compile(r"/api/whoami-v2")),
    (
        ("POST",),
        "lfs-batch",
        re.compile(r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch"),
    ),
    (("PUT",), "lfs-upload", re.compile(r"/lfs-upload/(?P<oid>[0-9a-f]{64})")),
    (("GET",), "agent-harnesses", re.compile(r"/api/agent-harnesses")),
    (("POST",), "validate-yaml", re.compile(r"/api/validate-yaml")),
    (("POST",), "create", re.compile(r"/api/repos/create")),
    (("DELETE",), "delete", re.compile(r"/api/repos/delete")),
    (("POST",), "preupload", re.compile(rf"/api/{_REPO}/preupload/(?P<rev>.+)")),
    (("POST",), "commit", re.compile(rf"/api/{_REPO}/commit/(?P<rev>.+)")),
    (("POST",), "paths-info", re.compile(rf"/api/{_REPO}/paths-info/(?P<rev>.+)")),
    (("GET",), "refs", re.compile(rf"/api/{_REPO}/refs")),
    (("GET",), "commits", re.compile(rf"/api/{_REPO}/commits/(?P<rev>.+)")),
    (("GET",), "tree", re.compile(rf"/api/{_REPO}/tree/(?P<rev>main|[0-9a-f]{{40}}|[^/]+)(?:/(?P<path>.*))?")),
    (("GET",), "info", re.compile(rf"/api/{_REPO}(?:/revision/(?P<rev>.+))?")),
    (
        ("GET", "HEAD"),
        "resolve",
        re.compile(r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
    ),
]


def _match_route(method: str, path: str) -> tuple[str, dict] | None:
    for methods, name, pattern in _ROUTES:
        match = pattern.fullmatch(path)
        if match and method in methods:
            params = {k: v for k, v in match.groupdict().items()}
            if name in ("resolve", "lfs-batch"):
                params["kind"] = params.get("kind") or "models"
            return name, params
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HubServer

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request_thread(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self.connections.discard(request)

    def drop_connections(self) -> None:
        """Cut kept-alive client connections too, so that an outage is an outage for every client."""
        with self.connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class HubServer:
    """The fake Hub: start it, point the clients at `url`, inject failures, inspect what was asked."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self.state = HubState()
        self.requests: list[tuple[str, str, int]] = []
        self.unknown_requests: list[tuple[str, str]] = []
        self.retry_after = 0
        self._failures: dict[str | None, int] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> HubServer:
        """Listen (again) on the same port; the repositories survive a stop/start."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused until `start` is called."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def fail_with(self, status: int = 500, routes: str | list[str] | None = None) -> None:
        """Answer ``status`` on the named routes (all routes when None) until `recover` is called.

        Route names: create, preupload, lfs-batch, lfs-upload, commit, info, tree, paths-info, resolve,
        validate-yaml, refs, commits, whoami. Injected answers carry ``Retry-After: retry_after`` (0 by default) to
        keep client back-off short.
        """
        with self._lock:
            for route in [routes] if routes is None or isinstance(routes, str) else routes:
                self._failures[route] = status

    def recover(self) -> None:
        with self._lock:
            self._failures.clear()

    def reset(self) -> None:
        """Forget repositories, recorded requests and injected failures."""
        self.recover()
        with self._lock:
            self.state = HubState()
            self.requests.clear()
            self.unknown_requests.clear()

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of a repository at ``revision`` (for assertions)."""
        repo = self.state.get_repo(repo_type, repo_id)
        return dict(self.state.get_commit(repo, revision).files)

    def all_commit_files(self, repo_id: str, repo_type: str = "model") -> list[tuple[str, str, bytes]]:
        """(commit title, path, content) of every file in every commit of a repository (for assertions)."""
        repo = self.state.get_repo(repo_type, repo_id)
        return [(c.title, path, data) for c in repo.commits.values() for path, data in c.files.items()]

    def commit_titles(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Commit titles on main, oldest first."""
        repo = self.state.get_repo(repo_type, repo_id)
        titles, oid = [], repo.branches["main"]
        while oid:
            titles.append(repo.commits[oid].title)
            oid = repo.commits[oid].parent
        return titles[::-1]

    def client_environment(self, home: str) -> dict[str, str]:
        """Environment variables that point the real clients (in this process or a child) at this server."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": "hf_fakeHubTestToken0123456789",
            "HF_HOME": home,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_ETAG_TIMEOUT": "5",
            "HF_HUB_DOWNLOAD_TIMEOUT": "10",
        }

    def point_clients_here(self, monkeypatch, home: str) -> dict[str, str]:
        """Set the environment and re-point the endpoint and cache constants the libraries read at import time."""
        import os

        environment = self.client_environment(home)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_CACHE"):
            monkeypatch.delenv(key, raising=False)

        from huggingface_hub import constants, hf_api

        hub_cache = os.path.join(home, "hub")
        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            self.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HOME", home)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", hub_cache)
        monkeypatch.setattr(constants, "HUGGINGFACE_HUB_CACHE", hub_cache)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", os.path.join(home, "token"))
        monkeypatch.setattr(hf_api.api, "endpoint", self.url)

        if "transformers" in sys.modules:
            import transformers.utils.hub as transformers_hub

            monkeypatch.setattr(transformers_hub, "_hf_api", None)
            for name in ("HF_HUB_CACHE", "TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE",
                         "PYTORCH_PRETRAINED_BERT_CACHE"):
                if hasattr(transformers_hub, name):
                    monkeypatch.setattr(transformers_hub, name, hub_cache)
        if "datasets" in sys.modules:
            from pathlib import Path

            import datasets.config as datasets_config

            monkeypatch.setattr(datasets_config, "HF_ENDPOINT", self.url)
            monkeypatch.setattr(datasets_config, "HUB_DATASETS_URL",
                                self.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
            monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", False)
            monkeypatch.setattr(datasets_config, "HF_DATASETS_CACHE", Path(home) / "datasets")
            monkeypatch.setattr(datasets_config, "HF_MODULES_CACHE", Path(home) / "modules")
        try:
            from huggingface_hub import HfFileSystem

            HfFileSystem.clear_instance_cache()
        except AttributeError:
            pass
        return environment

    # -- internals used by the handler ----------------------------------------------------------------------
    def _injected_status(self, route: str) -> int | None:
        with self._lock:
            return self._failures.get(route, self._failures.get(None))

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def _unknown(self, method: str, path: str) -> None:
        with self._lock:
            self.unknown_requests.append((method, path))
        print(f"[fake Hub] UNKNOWN ROUTE {method} {path}: answered 404 RouteNotImplemented", file=sys.stderr,
              flush=True)


if __name__ == "__main__":  # a manual check: python tests/hub_server.py, then point HF_ENDPOINT at it
    hub = HubServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(f"fake Hub listening on {hub.url} (HF_HUB_DISABLE_XET=1 is required)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()

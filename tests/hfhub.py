"""A stand-in Hugging Face Hub for the tests and demos: the HTTP endpoints huggingface_hub's
snapshot_download / hf_hub_download use, serving repositories from a folder.

No established Hub emulator is on PyPI, so this one follows the client's own code
(huggingface_hub 2.4: _snapshot_download.py, file_download.py get_hf_file_metadata,
hf_api.py repo_info / list_repo_tree, utils/_http.py hf_raise_for_status):

  GET  /api/models/<org>/<repo>/revision/<rev>      {"id", "sha", "siblings"}  (repo_info)
  GET  /api/models/<org>/<repo>/tree/<rev>?recursive {"type", "path", "oid", "size", "lfs"} list
  HEAD|GET /<org>/<repo>/resolve/<rev>/<path>       a small file: 200, ETag = git blob oid;
       an LFS file: 302 to another host ("CDN": localhost instead of 127.0.0.1) with
       X-Linked-Etag = sha256 and X-Linked-Size, as the Hub answers; the client stops at a
       foreign host, takes the metadata from the 302 and drops its token for the GET.
  every answer on the Hub host carries X-Repo-Commit; errors carry X-Error-Code
  (RepoNotFound, RevisionNotFound, EntryNotFound) as the client maps them.

Layout of --root: <org>/<repo>/<commit 40 hex>/<files>, and optionally
<org>/<repo>/refs.json {"main": "<commit>"} for branch names. Files named *.safetensors,
*.bin, *.gguf or of 10 MiB and more are served as LFS files.

    python tests/hfhub.py --root <dir> [--port 0] [--tls <dir>] [--token-file <file>]
prints {"endpoint": ..., "ca": ...} as one JSON line, then serves until killed.
"""

import argparse
import hashlib
import json
import os
import re
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

COMMIT = re.compile(r"^[0-9a-f]{40}$")
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".onnx")
LFS_THRESHOLD = 10 * 1024 * 1024


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha256.encode(), size)


def file_entry(root: Path, relative: str) -> dict:
    """The tree entry the Hub lists for one file (hf_api.RepoFile reads these keys)."""
    path = root / relative
    size = path.stat().st_size
    if relative.endswith(LFS_SUFFIXES) or size >= LFS_THRESHOLD:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        pointer = lfs_pointer(digest.hexdigest(), size)
        return {"type": "file", "path": relative, "size": size, "oid": git_blob_oid(pointer),
                "lfs": {"oid": digest.hexdigest(), "size": size, "pointerSize": len(pointer)}}
    return {"type": "file", "path": relative, "size": size, "oid": git_blob_oid(path.read_bytes())}


class Hub:
    def __init__(self, root: Path, token: str = None):
        self.root = Path(root)
        self.token = token
        self.requests = []  # (method, host, path, had_authorization): what the tests look at
        self._entries = {}
        self._lock = threading.Lock()

    def resolve(self, repo: str, revision: str):
        """The commit a revision names, or None."""
        folder = self.root / repo
        if COMMIT.match(revision):
            return revision if (folder / revision).is_dir() else None
        try:
            return json.loads((folder / "refs.json").read_text()).get(revision)
        except (OSError, ValueError):
            return None

    def entries(self, repo: str, commit: str) -> dict:
        with self._lock:
            key = (repo, commit)
            if key not in self._entries:
                base = self.root / repo / commit
                files = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
                self._entries[key] = {f: file_entry(base, f) for f in files}
            return self._entries[key]

    def blob(self, sha256: str):
        for (repo, commit), entries in list(self._entries.items()):
            for entry in entries.values():
                if entry.get("lfs", {}).get("oid") == sha256:
                    return self.root / repo / commit / entry["path"]
        return None


class Handler(BaseHTTPRequestHandler):
    hub: Hub = None
    cdn_host = "localhost"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet; the tests read hub.requests
        pass

    def _send(self, status, headers=None, body=b"", error_code=None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, data, commit=None):
        body = json.dumps(data).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(200, headers, body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        host = (self.headers.get("Host") or "").split(":")[0]
        authorization = self.headers.get("Authorization")
        self.hub.requests.append((self.command, host, url.path, authorization is not None))
        parts = [unquote(p) for p in url.path.split("/")]
        if parts[1:2] == ["cdn"] and len(parts) == 3:
            return self._cdn(parts[2])
        if host == self.cdn_host:
            return self._send(404, error_code="EntryNotFound")
        if self.hub.token and authorization != "Bearer %s" % self.hub.token:
            # the Hub answers a private repository without a valid token as if it did not exist
            return self._send(401, {"Content-Type": "application/json"},
                              b'{"error": "Invalid credentials in Authorization header"}', "RepoNotFound")
        if parts[1:3] == ["api", "models"] and len(parts) >= 7 and parts[5] in ("revision", "tree"):
            return self._api(parts[3] + "/" + parts[4], parts[5], parts[6])
        if len(parts) >= 6 and parts[3] == "resolve":
            return self._resolve(parts[1] + "/" + parts[2], parts[4], "/".join(parts[5:]))
        return self._send(404, error_code="RepoNotFound")

    def _api(self, repo, what, revision):
        if not (self.hub.root / repo).is_dir():
            return self._send(404, error_code="RepoNotFound")
        commit = self.hub.resolve(repo, revision)
        if not commit:
            return self._send(404, error_code="RevisionNotFound")
        entries = self.hub.entries(repo, commit)
        if what == "revision":
            return self._json({"id": repo, "modelId": repo, "sha": commit, "private": bool(self.hub.token),
                               "siblings": [{"rfilename": f} for f in entries]}, commit)
        folders = sorted({"/".join(f.split("/")[:n]) for f in entries for n in range(1, f.count("/") + 1)})
        listing = [{"type": "directory", "path": d, "oid": git_blob_oid(d.encode()), "size": 0} for d in folders]
        return self._json(listing + list(entries.values()), commit)

    def _resolve(self, repo, revision, filename):
        if not (self.hub.root / repo).is_dir():
            return self._send(404, error_code="RepoNotFound")
        commit = self.hub.resolve(repo, revision)
        if not commit:
            return self._send(404, error_code="RevisionNotFound")
        entry = self.hub.entries(repo, commit).get(filename)
        if entry is None:
            return self._send(404, {"X-Repo-Commit": commit}, error_code="EntryNotFound")
        if "lfs" in entry:
            sha256, port = entry["lfs"]["oid"], self.server.server_address[1]
            scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
            return self._send(302, {
                "Location": "%s://%s:%d/cdn/%s?filename=%s" % (scheme, self.cdn_host, port, sha256, quote(filename)),
                "X-Repo-Commit": commit, "ETag": '"%s"' % entry["oid"], "X-Linked-Etag": '"%s"' % sha256,
                "X-Linked-Size": str(entry["size"])})
        data = (self.hub.root / repo / commit / filename).read_bytes()
        return self._send(200, {"X-Repo-Commit": commit, "ETag": '"%s"' % entry["oid"],
                                "Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                                "Accept-Ranges": "bytes"}, data)

    def _cdn(self, sha256):
        path = self.hub.blob(sha256)
        if path is None:
            return self._send(404)
        size = path.stat().st_size
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
        headers = {"ETag": '"%s"' % sha256, "Content-Type": "application/octet-stream",
                   "Content-Length": str(size - start), "Accept-Ranges": "bytes"}
        if match:
            headers["Content-Range"] = "bytes %d-%d/%d" % (start, size - 1, size)
        self.send_response(206 if match else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as handle:
            handle.seek(start)
            for block in iter(lambda: handle.read(1 << 20), b""):
                self.wfile.write(block)


class HubServer:
    """The stand-in Hub on 127.0.0.1 (its "CDN" on localhost, the same port), in a thread."""

    def __init__(self, root: Path, port: int = 0, tls: dict = None, token: str = None):
        self.hub = Hub(root, token)
        handler = type("BoundHandler", (Handler,), {"hub": self.hub})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.tls = tls
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls["cert"]), str(tls["key"]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.endpoint = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.server.server_address[1])
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="<org>/<repo>/<commit>/<files>")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", type=Path, help="serve HTTPS with a CA and certificate made into this folder")
    parser.add_argument("--token-file", type=Path, help="require this bearer token (HF_TOKEN of the client)")
    args = parser.parse_args(argv)
    tls = None
    if args.tls:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from s3server import make_ca_and_server_cert

        args.tls.mkdir(parents=True, exist_ok=True)
        tls = make_ca_and_server_cert(args.tls)
    token = args.token_file.read_text().strip() if args.token_file else None
    server = HubServer(args.root, args.port, tls, token)
    print(json.dumps({"endpoint": server.endpoint, "ca": str(tls["ca"]) if tls else None}), flush=True)
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

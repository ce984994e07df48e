"""A real container registry for the tests: Debian's docker-registry (distribution v2) on
loopback with TLS from a test CA and htpasswd users, as the kitchen runs its own; and small
OCI images made on the spot, pushed with skopeo."""

import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import yaml

from s3server import make_ca_and_server_cert

USER = "kitchen"
PASSWORD = "kitchen-registry-test-password"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Registry:
    """docker-registry serving https://127.0.0.1:<port> with basic auth."""

    def __init__(self, folder: Path, tls=None, port: int = None):
        import bcrypt

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.tls = tls or make_ca_and_server_cert(folder)
        self.port = port or _free_port()
        self.host = "127.0.0.1:%d" % self.port
        # skopeo reads a CA for a host from <cert dir>/*.crt
        self.cert_dir = folder / "certs.d"
        self.cert_dir.mkdir(exist_ok=True)
        shutil.copy(self.tls["ca"], self.cert_dir / "ca.crt")
        htpasswd = folder / "htpasswd"
        htpasswd.write_bytes(b"%s:%s\n" % (USER.encode(), bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5))))
        self.authfile = folder / "auth.json"
        import base64
        self.authfile.write_text(json.dumps({"auths": {self.host: {
            "auth": base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()}}}))
        self.authfile.chmod(0o600)
        self.config = folder / "config.yml"
        self.config.write_text(yaml.safe_dump({
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(folder / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "tls": {"certificate": str(self.tls["cert"]), "key": str(self.tls["key"])}},
            "auth": {"htpasswd": {"realm": "kitchen", "path": str(htpasswd)}},
        }))
        self.process = None

    def start(self):
        self.process = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                        stdout=open(self.folder / "registry.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("docker-registry did not start: see %s" % (self.folder / "registry.log"))

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def skopeo_args(self):
        return ["--authfile", str(self.authfile), "--cert-dir", str(self.cert_dir)]

    def digest_of(self, repository, reference):
        """The manifest digest the registry serves, or None when it has no such image."""
        proc = subprocess.run(["skopeo", "inspect", "--raw", *self.skopeo_args(),
                               "docker://%s/%s%s" % (self.host, repository,
                                                      reference if reference.startswith("@") else ":" + reference)],
                              capture_output=True, check=False)
        if proc.returncode:
            return None
        return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()

    def catalog(self):
        import requests
        response = requests.get("https://%s/v2/_catalog" % self.host, auth=(USER, PASSWORD),
                                verify=str(self.tls["ca"]), timeout=10)
        response.raise_for_status()
        return sorted(response.json().get("repositories") or [])


def write_oci_image(folder: Path, tag: str, files: dict, random_bytes: int = 0, seed: int = 0) -> str:
    """An OCI image layout with one layer holding `files` ({path: bytes}) and optionally a file
    of `random_bytes` incompressible bytes; returns the manifest digest."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        contents = dict(files)
        if random_bytes:
            import random
            contents["payload.bin"] = random.Random(seed).randbytes(random_bytes)
        for name, data in sorted(contents.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    layer_tar = raw.getvalue()
    layer = blob(gzip.compress(layer_tar, compresslevel=1, mtime=0))
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    config = blob(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
    }, sort_keys=True).encode())
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": config, "layers": [layer]}, sort_keys=True).encode())
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (folder / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (folder / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    return manifest["digest"]


def push_image(registry: Registry, layout: Path, tag: str, repository: str, fmt: str = None):
    """skopeo copy an OCI layout into the registry (optionally converting, e.g. fmt='v2s2');
    returns the digest the registry serves."""
    digestfile = layout.parent / (layout.name + ".pushed-digest")
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-authfile", str(registry.authfile),
                    "--dest-cert-dir", str(registry.cert_dir), "--digestfile", str(digestfile),
                    *(["--format", fmt] if fmt else []),
                    "oci:%s:%s" % (layout, tag), "docker://%s/%s:%s" % (registry.host, repository, tag)],
                   check=True, capture_output=True)
    return digestfile.read_text().strip()

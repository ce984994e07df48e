#!/usr/bin/env python3
"""Fill a model volume from S3 and prove every file's sha256 before the model is served.

Runs in the fill Job of the kserve_vllm role (image: kitchen_images.model_loader, python3 +
boto3). Environment:
  AWS_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION  (data connection)
  AWS_CA_BUNDLE   CA bundle that verifies the endpoint (never disabled)
  KITCHEN_BUCKET  models bucket;  KITCHEN_PREFIX  the model's prefix, e.g. granite-3-8b/
  KITCHEN_TARGET  mounted volume, e.g. /mnt/models
The prefix holds the model files and SHA256SUMS (coreutils format, paths relative to the
prefix), written by the bundle import; KITCHEN_SUMS_FILE names a local SHA256SUMS instead (phase
3's flavours ConfigMap, for the adapter volume under the prefix lora/). Files are downloaded to a
staging folder on the same volume (those already in place with the listed sha256 are kept),
every listed file is checked, and only then moved into place; a marker records the SHA256SUMS
that was verified, so a rerun with the same content downloads nothing.
Exit status: 0 verified, 1 verification failed (every problem is listed), 2 bad setup.
"""

import hashlib
import json
import os
import shutil
import sys
import time

MANIFEST = "SHA256SUMS"
MARKER = ".kitchen-verified"
STAGING = ".kitchen-incoming"
CHUNK = 8 * 1024 * 1024


def log(event, **fields):
    print(json.dumps(dict(event=event, **fields), sort_keys=True), flush=True)


def parse_sums(text):
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, path = line.partition("  ")
        path = path.lstrip("*")
        if not sep or len(digest) != 64 or not path or path.startswith("/") or ".." in path.split("/"):
            raise ValueError("%s line %d is not '<sha256>  <relative path>': %r" % (MANIFEST, number, line))
        sums[path] = digest.lower()
    if not sums:
        raise ValueError("%s lists no files" % MANIFEST)
    return sums


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    try:
        import boto3
        bucket = os.environ["KITCHEN_BUCKET"]
        prefix = os.environ["KITCHEN_PREFIX"].strip("/") + "/"
        target = os.environ["KITCHEN_TARGET"]
        client = boto3.client(
            "s3", endpoint_url=os.environ["AWS_S3_ENDPOINT"],
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            verify=os.environ.get("AWS_CA_BUNDLE") or True)
    except KeyError as missing:
        log("setup-error", message="environment variable %s is not set" % missing)
        return 2

    sums_file = os.environ.get("KITCHEN_SUMS_FILE")
    try:
        if sums_file:
            with open(sums_file) as handle:
                manifest_text = handle.read()
        else:
            manifest_text = client.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read().decode()
    except Exception as exc:  # noqa: BLE001 - no endpoint, untrusted certificate, no such key
        log("setup-error", message="cannot read %s: %s" % (sums_file or "s3://%s/%s%s" % (bucket, prefix, MANIFEST), exc))
        return 2
    try:
        sums = parse_sums(manifest_text)
    except ValueError as exc:
        log("setup-error", message=str(exc))
        return 2
    manifest_digest = hashlib.sha256(manifest_text.encode()).hexdigest()
    marker = os.path.join(target, MARKER)
    if os.path.exists(marker) and open(marker).read().strip() == manifest_digest and all(
            os.path.isfile(os.path.join(target, p)) for p in sums):
        log("already-verified", files=len(sums), manifest_sha256=manifest_digest)
        return 0

    staging = os.path.join(target, STAGING)
    shutil.rmtree(staging, ignore_errors=True)
    started, total = time.monotonic(), 0
    problems = []
    kept = set()
    for path in sorted(sums):
        final = os.path.join(target, path)
        if os.path.isfile(final) and sha256_of(final) == sums[path]:
            kept.add(path)  # verified in place: an added adapter version moves only its own bytes
            continue
        local = os.path.join(staging, path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        try:
            client.download_file(bucket, prefix + path, local)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then the run fails
            problems.append("%s: cannot download (%s)" % (path, exc))
            continue
        size = os.path.getsize(local)
        total += size
        actual = sha256_of(local)
        if actual != sums[path]:
            problems.append("%s: sha256 %s, expected %s" % (path, actual, sums[path]))
        else:
            log("verified", path=path, bytes=size)
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        log("verification-failed", problems=problems)
        return 1
    for path in sorted(set(sums) - kept):
        final = os.path.join(target, path)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(os.path.join(staging, path), final)
    shutil.rmtree(staging, ignore_errors=True)
    with open(marker, "w") as handle:
        handle.write(manifest_digest + "\n")
    seconds = time.monotonic() - started
    log("filled", files=len(sums), kept=len(kept), bytes=total, seconds=round(seconds, 2),
        mib_per_second=round(total / 1048576 / seconds, 1) if seconds else None, manifest_sha256=manifest_digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Uploads to S3 that skip what is there and resume what was cut off.

Every object carries its sha256 as user metadata (x-amz-meta-sha256): an object with the
same sha256 and size is not sent again. A large file goes up in parts; when an earlier run
was interrupted, its multipart upload is found again and every part already stored whose
size and MD5 (the part ETag) match the local bytes is kept, so only the rest is sent.
All parts of all files share one thread pool, as boto3's TransferManager does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError, atomic_write, remove_unlisted

MiB = 1024 * 1024
# boto3 TransferConfig defaults: parts of 8 MiB from 8 MiB up, 10 threads.
THRESHOLD = 8 * MiB
MIN_PART = 8 * MiB
MAX_PARTS = 10000
CONCURRENCY = 10


def make_client(endpoint, access_key, secret_key, region="us-east-1", ca_file=None, concurrency=CONCURRENCY):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name=region, verify=ca_file or True,
        config=Config(max_pool_connections=concurrency + 2, connect_timeout=5, read_timeout=60,
                      retries={"max_attempts": 3, "mode": "standard"}, signature_version="s3v4",
                      s3={"addressing_style": "path"}))


def environment_configured(environ=None):
    """True when the environment names an S3 endpoint or credentials (boto3's own variables)."""
    environ = os.environ if environ is None else environ
    return any(environ.get(name) for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                               "AWS_PROFILE"))


def make_client_from_environment(concurrency=CONCURRENCY):
    """A client configured by boto3 itself: AWS_ENDPOINT_URL(_S3), AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY or a profile, AWS_CA_BUNDLE, AWS_DEFAULT_REGION."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
        config=Config(max_pool_connections=concurrency + 2, connect_timeout=5, read_timeout=60,
                      retries={"max_attempts": 3, "mode": "standard"}, signature_version="s3v4",
                      s3={"addressing_style": "path"}))


def part_size(size):
    return max(MIN_PART, math.ceil(size / MAX_PARTS / MiB) * MiB)


def _etag(value):
    return (value or "").strip('"').lower()


def _md5_range(path, offset, length):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        handle.seek(offset)
        remaining = length
        while remaining:
            block = handle.read(min(remaining, 4 * MiB))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def _read_range(path, offset, length):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def _endpoint_error(client, exc):
    return KitchenError("S3 at %s failed: %s. Parts already stored are kept: run the import again to resume"
                       % (client.meta.endpoint_url, exc))


def object_state(client, bucket, key, sha256, size):
    """'present' (same sha256 and size), 'different' (another content) or 'absent'."""
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return "absent"
        raise
    if head.get("Metadata", {}).get("sha256") == sha256 and head.get("ContentLength") == size:
        return "present"
    return "different"


class Upload:
    """One file to one key: the parts still to send, and the ones kept from before."""

    def __init__(self, bucket, key, path, sha256, size):
        self.bucket, self.key, self.path, self.sha256, self.size = bucket, key, path, sha256, size
        self.part_size = part_size(size)
        self.upload_id = None
        self.parts = {}  # number -> etag
        self.kept_bytes = 0

    @property
    def multipart(self):
        return self.size >= THRESHOLD

    def ranges(self):
        count = max(1, math.ceil(self.size / self.part_size))
        return [(n + 1, n * self.part_size, min(self.part_size, self.size - n * self.part_size)) for n in range(count)]


class Uploader:
    def __init__(self, client, concurrency=CONCURRENCY, report=None):
        self.client = client
        self.concurrency = concurrency
        self.report = report

    def _find_resumable(self, upload):
        """Adopt an interrupted multipart upload of the same key whose parts match the file."""
        client = self.client
        found = client.list_multipart_uploads(Bucket=upload.bucket, Prefix=upload.key).get("Uploads", [])
        ranges = {n: (offset, length) for n, offset, length in upload.ranges()}
        for candidate in sorted((u for u in found if u["Key"] == upload.key),
                                key=lambda u: u.get("Initiated", 0), reverse=True):
            stored = {}
            paginator = client.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=upload.bucket, Key=upload.key, UploadId=candidate["UploadId"]):
                for part in page.get("Parts", []):
                    stored[part["PartNumber"]] = (_etag(part["ETag"]), part["Size"])
            usable = all(number in ranges and ranges[number][1] == size
                         and _md5_range(upload.path, ranges[number][0], size) == etag
                         for number, (etag, size) in stored.items())
            if usable and upload.upload_id is None:
                upload.upload_id = candidate["UploadId"]
                upload.parts = {n: etag for n, (etag, _) in stored.items()}
                upload.kept_bytes = sum(size for _, size in stored.values())
            else:
                client.abort_multipart_upload(Bucket=upload.bucket, Key=upload.key, UploadId=candidate["UploadId"])

    def upload(self, uploads):
        """Send every Upload (all absent or different on the server); returns
        {key: 'uploaded'|'resumed'} and the bytes actually sent."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client
        tasks = []
        try:
            for upload in uploads:
                if not upload.multipart:
                    tasks.append((upload, None))
                    continue
                self._find_resumable(upload)
                if upload.upload_id is None:
                    upload.upload_id = client.create_multipart_upload(
                        Bucket=upload.bucket, Key=upload.key, Metadata={"sha256": upload.sha256})["UploadId"]
                tasks += [(upload, r) for r in upload.ranges() if r[0] not in upload.parts]
        except (BotoCoreError, ClientError) as exc:
            raise _endpoint_error(client, exc) from None

        def send(task):
            upload, part = task
            if part is None:
                with open(upload.path, "rb") as handle:
                    client.put_object(Bucket=upload.bucket, Key=upload.key, Body=handle,
                                      Metadata={"sha256": upload.sha256})
                sent = upload.size
            else:
                number, offset, length = part
                response = client.upload_part(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id,
                                              PartNumber=number, Body=_read_range(upload.path, offset, length))
                upload.parts[number] = _etag(response["ETag"])
                sent = length
            if self.report:
                self.report(sent)
            return sent

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(send, task) for task in tasks]
            sent, failure = 0, None
            for future in futures:
                try:
                    sent += future.result()
                except (BotoCoreError, ClientError, OSError) as exc:
                    failure = failure or exc
                    for other in futures:
                        other.cancel()
        if failure:
            raise _endpoint_error(client, failure)
        results = {}
        try:
            for upload in uploads:
                if upload.multipart:
                    client.complete_multipart_upload(
                        Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id,
                        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": '"%s"' % e}
                                                   for n, e in sorted(upload.parts.items())]})
                state = object_state(client, upload.bucket, upload.key, upload.sha256, upload.size)
                if state != "present":
                    raise KitchenError("s3://%s/%s: after the upload the server holds other content than %s "
                                      "(sha256 %s expected)" % (upload.bucket, upload.key, upload.path, upload.sha256))
                results[upload.key] = "resumed" if upload.kept_bytes else "uploaded"
        except (BotoCoreError, ClientError) as exc:
            raise _endpoint_error(client, exc) from None
        return results, sent


def ensure_bucket(client, bucket):
    """Create a missing bucket; True when it was created."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    client.create_bucket(Bucket=bucket)
    return True


def bucket_exists(client, bucket):
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise


def put_bytes(client, bucket, key, data: bytes):
    """Small object (SHA256SUMS, receipts); False when the same bytes are there already."""
    digest = hashlib.sha256(data).hexdigest()
    if object_state(client, bucket, key, digest, len(data)) == "present":
        return False
    client.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"sha256": digest})
    return True


MIRROR_INDEX = ".kitchen-s3-index.json"  # hidden: bundle sources skip hidden files


def mirror_prefix(client, bucket, prefix, folder, concurrency=4):
    """Make `folder` hold exactly the objects below s3://bucket/prefix (a connected-side
    source). An object whose ETag and size match what was fetched before is not fetched
    again; files no longer in the bucket are removed. Returns the keys downloaded."""
    from botocore.exceptions import BotoCoreError, ClientError

    source = "s3://%s/%s" % (bucket, prefix)
    prefix = prefix.strip("/")
    index_path = os.path.join(folder, MIRROR_INDEX)
    try:
        with open(index_path, encoding="utf-8") as handle:
            index = json.load(handle)
    except (FileNotFoundError, ValueError):
        index = {}
    objects = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix + "/" if prefix else ""):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) + 1:] if prefix else item["Key"]
                if not relative or relative.endswith("/"):
                    continue  # folder markers
                parts = relative.split("/")
                if ".." in parts or any(p.startswith(".") for p in parts):
                    raise KitchenError("%s: object key %r is not a plain relative path; refused" % (source, item["Key"]))
                objects[relative] = {"etag": _etag(item["ETag"]), "size": item["Size"]}
    except (BotoCoreError, ClientError) as exc:
        raise KitchenError("%s: cannot list the source at %s: %s" % (source, client.meta.endpoint_url, exc)) from None
    if not objects:
        raise KitchenError("%s: no objects there" % source)

    def fresh(relative):
        path = os.path.join(folder, relative)
        return index.get(relative) == objects[relative] and os.path.isfile(path) \
            and os.path.getsize(path) == objects[relative]["size"]

    wanted = sorted(r for r in objects if not fresh(r))

    def fetch(relative):
        path = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = path + ".kitchen-partial"
        client.download_file(bucket, "%s/%s" % (prefix, relative) if prefix else relative, partial)
        if os.path.getsize(partial) != objects[relative]["size"]:
            os.unlink(partial)
            raise KitchenError("%s/%s: downloaded %d bytes, the listing said %d"
                              % (source.rstrip("/"), relative, os.path.getsize(partial), objects[relative]["size"]))
        os.replace(partial, path)

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(fetch, wanted))
    except (BotoCoreError, ClientError) as exc:
        raise KitchenError("%s: download from %s failed: %s; run the build again to go on"
                          % (source, client.meta.endpoint_url, exc)) from None
    remove_unlisted(folder, objects)
    atomic_write(index_path, json.dumps({r: objects[r] for r in sorted(objects)}, sort_keys=True).encode())
    return ["%s/%s" % (source.rstrip("/"), r) for r in wanted]

# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""What a tenant may do in the kitchen's object storage: pure Python.

The platform writes models, adapters and evaluation sets with its own keys, which stay in the
platform's namespace. A tenant reads those (its model servers and Jobs fill volumes from them)
and writes only below its own prefix of the tenant-data bucket; so no tenant can overwrite a
model or an adapter version, or reach another tenant's objects. The policy is AWS IAM policy
language, which MinIO reads as is (`mc admin policy create`) and the tests load into a real S3
server's IAM API to prove what it allows.
"""

from __future__ import annotations

READ_ACTIONS = ["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"]
OWN_PREFIX_ACTIONS = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
                      "s3:PutObject"]


def _arn(bucket, key=None):
    return "arn:aws:s3:::%s" % (bucket if key is None else "%s/%s" % (bucket, key))


def tenant_prefix(tenant: str) -> str:
    """The key prefix a tenant owns in the tenant-data bucket."""
    return "%s/" % tenant


def tenant_s3_policy(tenant: str, buckets: dict) -> dict:
    """The policy of `tenant`'s own S3 user. `buckets` is kitchen_storage.buckets (models,
    adapters, eval, tenant_data)."""
    shared = [buckets[key] for key in ("models", "adapters", "eval")]
    data, prefix = buckets["tenant_data"], tenant_prefix(tenant)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadPlatformContent", "Effect": "Allow", "Action": list(READ_ACTIONS),
             "Resource": [arn for bucket in shared for arn in (_arn(bucket), _arn(bucket, "*"))]},
            {"Sid": "ListOwnPrefix", "Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
             "Resource": [_arn(data)], "Condition": {"StringLike": {"s3:prefix": [prefix, prefix + "*"]}}},
            {"Sid": "ReadWriteOwnPrefix", "Effect": "Allow", "Action": list(OWN_PREFIX_ACTIONS),
             "Resource": [_arn(data, prefix + "*")]},
        ],
    }


def tenant_credential_problems(*, storage_type, tenants, credentials) -> list:
    """(variable path, message) for the per-tenant keys of kitchen_storage.tenant_credentials:
    an external object store cannot be given users by the toolkit, so every tenant needs its
    keys there; keys of a name that is no tenant are a typo or a leftover."""
    credentials = credentials if isinstance(credentials, dict) else {}
    out = []
    if storage_type == "external":
        out += [("kitchen_storage.tenant_credentials.%s" % tenant,
                 "required: an external object store needs each tenant's own keys (read-only on models, "
                 "adapters and eval, read-write on its prefix %r of the tenant-data bucket)" % tenant_prefix(tenant))
                for tenant in tenants if tenant not in credentials]
    out += [("kitchen_storage.tenant_credentials.%s" % name, "%r is not a tenant in kitchen_tenants" % name)
            for name in sorted(credentials) if name not in tenants]
    return out

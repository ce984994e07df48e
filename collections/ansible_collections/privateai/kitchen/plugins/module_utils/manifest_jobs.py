# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jobs named by what they do: pure Python.

A Job's pod template is immutable on a real API server, so a Job whose spec changes under the
same name is refused, and a Job whose inputs change under the same name never runs again.
Naming each Job `<stem>-<digest>`, the digest taken over its spec and the data of the
ConfigMaps of the same batch it mounts, makes a new Job exactly when what it does changes;
the stem, kept in a label, finds the generations it replaces.
"""

from __future__ import annotations

import hashlib
import json

# Where the stem of a content-named Job is kept (the generations of one Job share it).
JOB_STEM_LABEL = "privateai.kitchen/job"
NAME_LIMIT = 63  # a Job's name becomes a label value of its pods (job-name): 63 characters


def _mounted_configmaps(spec) -> set:
    pod = ((spec or {}).get("template") or {}).get("spec") or {}
    names = set()
    for volume in pod.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name"):
            names.add(volume["configMap"]["name"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name"):
                names.add(source["configMap"]["name"])
    return names


def content_digest(job, configmaps) -> str:
    """sha256 over the Job's spec and the data of the mounted ConfigMaps found in `configmaps`
    ({(namespace, name): data}); ConfigMaps from elsewhere (the cluster's CA bundle) are not
    the Job's to track."""
    namespace = (job.get("metadata") or {}).get("namespace")
    inputs = {name: configmaps[(namespace, name)] for name in sorted(_mounted_configmaps(job.get("spec")))
              if (namespace, name) in configmaps}
    canonical = json.dumps({"spec": job.get("spec"), "inputs": inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def named_by_content(manifests) -> list:
    """Copies of `manifests` with every Job renamed `<stem>-<8 hex digits>` (the stem is its
    name in the template, cut so the whole fits 63 characters) and labelled with its stem."""
    configmaps = {((m.get("metadata") or {}).get("namespace"), m["metadata"]["name"]): m.get("data") or {}
                  for m in manifests if m.get("kind") == "ConfigMap"}
    out = []
    for manifest in manifests:
        if manifest.get("kind") == "Job":
            meta = dict(manifest.get("metadata") or {})
            stem = str(meta["name"])[:NAME_LIMIT - 9].rstrip("-")
            meta["name"] = "%s-%s" % (stem, content_digest(manifest, configmaps)[:8])
            meta["labels"] = dict(meta.get("labels") or {}, **{JOB_STEM_LABEL: stem})
            manifest = dict(manifest, metadata=meta)
        out.append(manifest)
    return out


def _finished(job) -> bool:
    conditions = ((job.get("status") or {}).get("conditions")) or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def replaced_jobs(found, current) -> list:
    """'namespace/name' of the Jobs in `found` (as read from the cluster) that an earlier run
    left: the same stem as a Job of `current`, another name, and finished. A generation still
    running is left alone."""
    wanted = {((m.get("metadata") or {}).get("namespace"), (m["metadata"].get("labels") or {}).get(JOB_STEM_LABEL)):
              m["metadata"]["name"] for m in current if m.get("kind") == "Job"}
    stale = []
    for job in found:
        meta = job.get("metadata") or {}
        key = (meta.get("namespace"), (meta.get("labels") or {}).get(JOB_STEM_LABEL))
        if key in wanted and meta.get("name") != wanted[key] and _finished(job):
            stale.append("%s/%s" % (meta.get("namespace"), meta["name"]))
    return sorted(stale)

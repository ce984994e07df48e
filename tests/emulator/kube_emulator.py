#!/usr/bin/env python3
"""A Kubernetes API emulator for the OpenShift scenarios: kmock's KubernetesEmulator, with
discovery for the core kinds, every CRD in the CRD folder and the OLM/MCO kinds the roles read,
plus a thin layer that closes the gaps between kmock 0.8 and a real API server for what
kubernetes.core relies on (see molecule/openshift-emulator/README.md):

1. server-side apply (PATCH application/apply-patch+yaml) of an object that does not exist
   creates it, as a real API server does (kmock answers 404);
2. list responses carry `kind: <Kind>List` and `apiVersion` (k8s_info needs them);
3. dry-run requests (`?dryRun=All`, what check mode sends) answer with the would-be object and
   change nothing;
4. objects get metadata.uid, creationTimestamp and resourceVersion, bumped on change only;
5. writes are refused as a real API server refuses them (api_rules.py): immutable fields,
   custom resources against their CRD's schema, server-side apply conflicts between field
   managers; with the server's status codes and Status bodies.

Not an API server's: GET /emulator/history lists every stored change in order (resourceVersion,
ADDED/MODIFIED/STATUS, kind, namespace, name, the status condition types then True), so a test
can prove the order in which objects were created and became ready.

Readiness is simulated by a small controller loop that sets status fields the way the real
controllers would (Deployment Available, Job Complete, InferenceService Ready, CSV Succeeded
after its InstallPlan is approved, a MachineConfigPool Updating then Updated after a
MachineConfig of its role changes, ...). Objects named with --never-ready keep no status, so
timeouts can be tested.

    python kube_emulator.py --port 0 --crd-dir ../shared/crds --kubeconfig out/kubeconfig \
        --node gpu-node-1=1 --node gpu-node-2=mig-1g.10gb:7 --never-ready InferenceService/ns/name
"""

import argparse
import asyncio
import copy
import datetime
import glob
import hashlib
import json
import os
import re
import signal
import sys
import uuid

import aiohttp.web
import attrs
import kmock
import multidict
import yaml
from kmock._internal import enums

import api_rules

EXTRA_RESOURCES = [
    # group/version/plural, kind, namespaced: kinds the roles read that have no CRD file here.
    ("operators.coreos.com/v1alpha1/installplans", "InstallPlan", True),
    ("operators.coreos.com/v1alpha1/clusterserviceversions", "ClusterServiceVersion", True),
    ("machineconfiguration.openshift.io/v1/machineconfigpools", "MachineConfigPool", False),
]


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class KitchenEmulator(kmock.KubernetesEmulator):
    never_ready: set = attrs.field(factory=set)
    # Pass rate the emulated evaluation Job reports per "<flavour>@<version>" (default 1.0).
    eval_scores: dict = attrs.field(factory=dict)
    _version: int = attrs.field(default=1000, init=False)
    # Pod logs by (namespace, pod): what the simulated taste-test pods print.
    pod_logs: dict = attrs.field(factory=dict, init=False)
    # openAPIV3Schema of each served custom resource version, by resource.
    schemas: dict = attrs.field(factory=dict, init=False)
    # Field owners of each object: {manager key: paths}, see api_rules.apply.
    _owners: dict = attrs.field(factory=dict, init=False)
    # Every stored change, in order (GET /emulator/history).
    history: list = attrs.field(factory=list, init=False)

    def record(self, event, obj):
        meta = obj.get("metadata") or {}
        conditions = ((obj.get("status") or {}).get("conditions")) or []
        self.history.append({"resourceVersion": int(meta.get("resourceVersion") or 0), "type": event,
                             "kind": obj.get("kind"), "namespace": meta.get("namespace"), "name": meta.get("name"),
                             "conditions": sorted(c.get("type") for c in conditions if c.get("status") == "True")})

    def _bump(self):
        self._version += 1
        return str(self._version)

    def _find(self, resource, namespace, name):
        key = (resource, namespace, name)
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else obj

    async def _handle(self, request):
        if os.environ.get("KITCHEN_EMULATOR_DEBUG"):
            print(request.method, request.url, request.action, request.resource, request.namespace, request.name,
                  file=sys.stderr, flush=True)
        request = self._namespace_object(request)
        if request.url.path == "/emulator/history":
            return self._json({"items": self.history})
        logs = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$", request.url.path)
        if logs:
            text = self.pod_logs.get((logs.group(1), logs.group(2)))
            if text is None:
                return self._not_found(attrs.evolve(request, name=logs.group(2)))
            return aiohttp.web.Response(text=text, content_type="text/plain")
        if request.resource is not None and request.action == enums.action.FETCH and request.resource.plural == "namespaces":
            found = self._find(request.resource, None, request.name)
            return self._json(found.raw) if found is not None else self._not_found(request)
        if self._is_write(request):
            return await self._write(request)
        if request.resource is not None and request.action == enums.action.DELETE and request.name:
            self._owners.pop((request.resource, request.namespace, request.name), None)
        return await super()._handle(request)

    def _namespace_object(self, request):
        """kmock reads /api/v1/namespaces/NAME as a namespace prefix: make it the Namespace (gap 5)."""
        match = re.match(r"^/api/v1/namespaces/([^/]+)/?$", request.url.path)
        if not match or request.resource is None or request.resource.plural is not None:
            return request
        action = {"GET": enums.action.FETCH, "PATCH": enums.action.UPDATE, "PUT": enums.action.UPDATE,
                  "DELETE": enums.action.DELETE}.get(str(request.method.value).upper())
        return attrs.evolve(request, resource=kmock.resource("", "v1", "namespaces"), namespace=None,
                            name=match.group(1), action=action)

    @staticmethod
    def _method(request):
        return str(request.method.value).upper()

    def _is_write(self, request):
        """A create, replace or patch of a whole object: served here, with the refusals of a
        real API server (api_rules.py). Subresources keep kmock's own handling."""
        if request.resource is None or request.subresource is not None:
            return False
        method = self._method(request)
        return (method == "POST" and request.name is None) or (method in ("PUT", "PATCH") and request.name is not None)

    async def _write(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        meta = data.get("metadata") or {}
        key = (request.resource, request.namespace or meta.get("namespace"), request.name or meta.get("name"))
        try:
            if self._method(request) != "POST":
                api_rules.identity_errors(request.name, request.namespace, data)
            async with self._lock:
                existing = self._find(*key)
                new, owners, warnings = self._would_be(request, key, existing, copy.deepcopy(data))
                status = 201 if existing is None else 200
                if request.params.get("dryRun"):  # gap 3: the would-be object, nothing stored
                    return self._json(new, status=status, warnings=warnings)
                stored = await self._store(key, existing, new)
                self._owners[key] = owners
                return self._json(stored, status=status, warnings=warnings)
        except api_rules.Refused as refusal:
            return self._json(refusal.body, status=refusal.body["code"])

    def _would_be(self, request, key, existing, data):
        """The object a write would leave, its field owners and the warnings; or Refused."""
        method, resource = self._method(request), request.resource
        old = copy.deepcopy(existing.raw) if existing is not None else None
        owners = self._owners.get(key, {}) if old is not None else {}
        api_version = "%s/%s" % (resource.group, resource.version) if resource.group else resource.version
        # Without ?fieldManager the manager of an update is the client's User-Agent up to "/".
        manager = request.params.get("fieldManager") or request.headers.get("User-Agent", "unknown").split("/")[0]
        if method == "POST" and old is not None:
            raise self._already_exists(resource, old)
        if method != "POST" and old is None and "apply-patch" not in request.headers.get("Content-Type", ""):
            raise api_rules.Refused(404, "NotFound", "%s %s not found" % (
                api_rules.group_resource(resource.group, resource.plural), json.dumps(request.name)),
                {"name": request.name, "group": resource.group, "kind": resource.plural})
        if method == "PATCH" and "apply-patch" in request.headers.get("Content-Type", ""):
            if not request.params.get("fieldManager"):
                raise api_rules.invalid("meta.k8s.io", "PatchOptions", "", [api_rules.cause(
                    "FieldValueRequired", "fieldManager", "Required value: is required for apply patch")])
            force = str(request.params.get("force", "")).lower() in ("true", "1")
            new, owners = api_rules.apply(old, data, owners, manager, force)  # gap 1: creates if missing
        else:
            if method == "PUT":
                self._check_version(resource, old, data)
                new = data
            else:
                new = api_rules.merge(old, data, nulls_remove=True) if old is not None else data
            owners = api_rules.update(old, new, owners, manager, api_version)
        warnings = self._admit(request, old, new)
        self._stamp(old, new)
        return new, owners, warnings

    def _kind(self, resource, obj):
        info = self._resources[resource] if resource in self._resources else None
        return getattr(info, "kind", None) or obj.get("kind")

    def _admit(self, request, old, new):
        """What the API server checks of the object a write leaves: the structural schema of a
        custom resource (pruning unknown fields, then validation) and immutable fields."""
        resource, warnings = request.resource, []
        kind, name = self._kind(resource, new), (new.get("metadata") or {}).get("name")
        causes = []
        schema = self.schemas.get(resource)
        if schema is not None:
            unknown = ['unknown field "%s"' % api_rules.dotted(path) for path in api_rules.prune(new, schema)]
            # fieldValidation: an empty directive is Warn (apiserver handlers/rest.go
            # fieldValidation()): unknown fields are dropped with a warning. kubernetes.core sends
            # none; kubectl sends Strict (its --validate=strict default), which refuses them.
            directive = request.params.get("fieldValidation") or "Warn"
            if unknown and directive == "Strict":
                raise api_rules.bad_request("strict decoding error: " + ", ".join(unknown))
            if directive == "Warn":
                warnings += unknown
            causes += api_rules.schema_errors(new, schema, old)
        if old is not None:
            causes += api_rules.update_errors(resource.group, kind, old, new)
        if causes:
            raise api_rules.invalid(resource.group, kind, name, causes)
        return warnings

    def _stamp(self, old, new):
        """Server-owned metadata: set on create, kept on update (resourceVersion in _store)."""
        meta = new.setdefault("metadata", {})
        if old is None:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            meta["generation"] = 1
            return
        for field in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            if field in old.get("metadata", {}):
                meta[field] = old["metadata"][field]

    async def _store(self, key, existing, new):
        """Keep the new object; the version moves only on a real change, as on a server."""
        if existing is not None and new == existing.raw:
            return existing.raw
        new["metadata"]["resourceVersion"] = self._bump()
        if key in self._objects:
            self._objects[key].create(new)  # a new version of the object (or its re-creation)
        else:
            self._objects[key] = new
        raw = self._objects[key].raw
        self.record("ADDED" if existing is None else "MODIFIED", raw)
        await self._buses[key[0]].put({"type": "ADDED" if existing is None else "MODIFIED", "object": raw})
        return raw

    @staticmethod
    def _check_version(resource, old, data):
        """A replace of another version than the stored one is a conflict (optimistic locking)."""
        wanted = (data.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != old["metadata"].get("resourceVersion"):
            name = old["metadata"]["name"]
            raise api_rules.Refused(409, "Conflict", "Operation cannot be fulfilled on %s %s: the object has been "
                                    "modified; please apply your changes to the latest version and try again" % (
                                        api_rules.group_resource(resource.group, resource.plural), json.dumps(name)),
                                    {"name": name, "group": resource.group, "kind": resource.plural})

    @staticmethod
    def _already_exists(resource, old):
        name = old["metadata"]["name"]
        return api_rules.Refused(409, "AlreadyExists", "%s %s already exists" % (
            api_rules.group_resource(resource.group, resource.plural), json.dumps(name)),
            {"name": name, "group": resource.group, "kind": resource.plural})

    @staticmethod
    def _json(payload, status=200, warnings=()):
        headers = multidict.CIMultiDict(("Warning", "299 - %s" % json.dumps(text)) for text in warnings)
        return aiohttp.web.json_response(payload, status=status, headers=headers)

    @staticmethod
    def _not_found(request):
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404,
                                          "reason": "NotFound", "message": "%s %r not found" % (
                                              request.resource.plural, request.name)}, status=404)

    async def _serve_list(self, request):  # gap 2
        payload = await super()._serve_list(request)
        info = self._resources[request.resource] if request.resource in self._resources else None
        kind = getattr(info, "kind", None) or request.resource.plural.capitalize()
        group, version = request.resource.group, request.resource.version
        payload["apiVersion"] = "%s/%s" % (group, version) if group else version
        payload["kind"] = kind + "List"
        selector = request.params.get("labelSelector")
        if selector:  # k8s_log finds the pods of a Job by label
            wanted = dict(term.split("=", 1) for term in selector.split(",") if "=" in term)
            payload["items"] = [item for item in payload["items"]
                                if all(((item.get("metadata") or {}).get("labels") or {}).get(k) == v
                                       for k, v in wanted.items())]
        return payload


def load_discovery(emulator, crd_dir):
    emulator.resources.load_bundled()
    paths = sorted(glob.glob(os.path.join(crd_dir, "*.yaml")))
    if not paths:
        # Without them every custom resource would be refused as unknown, for the wrong reason.
        sys.exit("kube_emulator: no CRD YAML files in %s (--crd-dir)" % crd_dir)
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for doc in yaml.load_all(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if version.get("served", True):
                        _declare(emulator, "%s/%s/%s" % (spec["group"], version["name"], spec["names"]["plural"]),
                                 spec["names"]["kind"], spec["scope"] == "Namespaced", spec["names"].get("singular"))
                        schema = (version.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema")
                        if schema:
                            emulator.schemas[kmock.resource(spec["group"], version["name"], spec["names"]["plural"])] = schema
    for key, kind, namespaced in EXTRA_RESOURCES:
        _declare(emulator, key, kind, namespaced, kind.lower())


def _declare(emulator, key, kind, namespaced, singular):
    info = emulator.resources[key]
    info.kind, info.namespaced, info.singular = kind, namespaced, singular
    info.verbs.update(["create", "delete", "get", "list", "patch", "update", "watch"])
    info.subresources.add("status")


def resource_of(emulator, api_version, plural):
    group, _, version = api_version.rpartition("/")
    return kmock.resource(group, version, plural)


def set_status(emulator, obj, status):
    if obj.raw.get("status") != api_rules.merge(obj.raw.get("status") or {}, status):
        obj.patch({"status": status, "metadata": {"resourceVersion": emulator._bump()}})
        emulator.record("STATUS", obj.raw)


def condition(kind_of, status="True"):
    return {"conditions": [{"type": kind_of, "status": status, "lastTransitionTime": now()}]}


READY_RULES = {
    # plural: status a real controller would set once the object works.
    "deployments": condition("Available"),
    "jobs": dict(condition("Complete"), succeeded=1),
    "inferenceservices": condition("Ready"),
    "catalogsources": {"connectionState": {"lastObservedState": "READY"}},
    "clusterpolicies": {"state": "ready"},
    "dscinitializations": {"phase": "Ready"},
    "datascienceclusters": {"phase": "Ready"},
}


async def simulate_controllers(emulator):
    """Every half second, move objects along the way their controllers would. A failure is
    logged and the loop goes on: a dead loop would look like objects that never become ready."""
    while True:
        try:
            await _simulate_once(emulator)
        except Exception:  # noqa: BLE001 - reported on stderr (the emulator log), then retried
            import traceback
            traceback.print_exc()
        await asyncio.sleep(0.5)


async def _simulate_once(emulator):
    """One pass over every object."""
    for (resource, namespace, name), obj in list(emulator._objects.items()):
        if obj.deleted or "%s/%s/%s" % (obj.raw.get("kind"), namespace, name) in emulator.never_ready \
                or "%s/%s" % (obj.raw.get("kind"), name) in emulator.never_ready:
            continue
        plural = resource.plural
        if plural in READY_RULES:
            set_status(emulator, obj, READY_RULES[plural])
        if plural == "subscriptions":
            await _subscription(emulator, namespace, obj)
        elif plural == "installplans" and (obj.raw.get("spec") or {}).get("approved"):
            for csv in obj.raw["spec"]["clusterServiceVersionNames"]:
                key = (resource_of(emulator, "operators.coreos.com/v1alpha1", "clusterserviceversions"), namespace, csv)
                if key not in emulator._objects:
                    emulator._objects[key] = {"apiVersion": "operators.coreos.com/v1alpha1",
                                              "kind": "ClusterServiceVersion",
                                              "metadata": {"name": csv, "namespace": namespace},
                                              "status": {"phase": "Succeeded"}}
        elif plural == "machineconfigpools":
            _machineconfigpool(emulator, name, obj)
        elif plural == "jobs" and "-evaluate-" in name:
            _job_pod(emulator, namespace, name, obj, _evaluation_report)
        elif plural == "jobs" and "-flavours-" in name:
            _job_pod(emulator, namespace, name, obj, _flavour_report)
        elif plural == "jobs" and "-taste-" in name:
            _job_pod(emulator, namespace, name, obj, _taste_report)


def _job_pod(emulator, namespace, name, job, report):
    """The finished pod of a Job (label job-name) and its log: one JSON line, as the Job's
    script prints it, from report(emulator, namespace, pod spec, env of its container)."""
    pod = name + "-pod"
    key = (kmock.resource("", "v1", "pods"), namespace, pod)
    if key in emulator._objects:
        return
    spec = job.raw["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}
    emulator._objects[key] = {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": pod, "namespace": namespace, "labels": {"job-name": name}},
                              "status": {"phase": "Succeeded"}}
    emulator.pod_logs[(namespace, pod)] = json.dumps(report(emulator, namespace, spec, env)) + "\n"


def _taste_report(emulator, namespace, spec, env):
    return {"model": env.get("KITCHEN_MODEL"), "url": env.get("KITCHEN_URL"), "ok": True,
            "answer": "(emulated: no model runs in the API emulator)",
            "latency_seconds": 0.0, "tokens_per_second": None}


def _flavour_report(emulator, namespace, spec, env):
    """What switch_flavours.py prints: what the flavours ConfigMap lists is served (no vLLM
    runs here; the report says so)."""
    found = _job_inputs(emulator, namespace, spec)
    wanted = json.loads(found["flavours.json"]) if found is not None else {}
    return {"ok": found is not None, "model": env.get("KITCHEN_MODEL"), "loaded": sorted(wanted), "switched": [],
            "unloaded": [], "kept": [], "serving": wanted, "emulated": "no model runs in the API emulator"}


def _job_inputs(emulator, namespace, spec):
    """The data of the ConfigMap a flavour or evaluation Job mounts as its inputs."""
    config_map = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == "inputs")
    found = emulator._find(kmock.resource("", "v1", "configmaps"), namespace, config_map)
    return found.raw["data"] if found is not None else None


def _evaluation_report(emulator, namespace, spec, env):
    """What evaluate_flavours.py prints, from the Job's inputs: each candidate's evaluation set
    (its cases counted) and files (listed in SHA256SUMS, else an error), scored at the pass rate
    the emulator was started with for it (--eval-score), 1.0 otherwise."""
    data = _job_inputs(emulator, namespace, spec) or {}
    candidates = json.loads(data.get("candidates.json", "{}"))
    listed = {line.split("  ", 1)[1].rsplit("/", 1)[0] for line in data.get("SHA256SUMS", "").splitlines() if line}
    report = {"ok": True, "model": env.get("KITCHEN_MODEL"), "results": {}, "errors": {},
              "emulated": "no model runs in the API emulator"}
    for name, entry in sorted(candidates.items()):
        total = sum(1 for line in data.get(entry["eval_set"], "").splitlines() if line.strip())
        relative = name.replace("@", "/")  # <flavour>/<version>, as the sync places it
        if not total or relative not in listed or not entry["path"].endswith("/" + relative):
            report["errors"][name] = "emulated: no evaluation set or no files listed for %s" % entry["path"]
            continue
        passed = round(emulator.eval_scores.get(name, 1.0) * total)
        report["results"][name] = {"passed": passed, "total": total, "pass_rate": round(passed / total, 4),
                                   "latency_p50_seconds": 0.0, "latency_max_seconds": 0.0,
                                   "failures": [{"prompt": "(emulated)", "passed": False, "text": ""}] * (total - passed)}
    report["ok"] = not report["errors"]
    return report


def _machineconfigpool(emulator, name, pool):
    """The Machine Config Operator in small: the MachineConfigs labelled with the pool's role
    render one config; when it changes, the pool moves to it (generation bumped) and is Updating
    for one pass, then Updated with every machine on it. Pools exist only where a test creates
    them; one named with --never-ready keeps the status it was created with (e.g. Degraded)."""
    configs = sorted((obj.raw for (resource, _, _), obj in list(emulator._objects.items())
                      if resource.plural == "machineconfigs" and not obj.deleted
                      and ((obj.raw.get("metadata") or {}).get("labels") or {}).get(
                          "machineconfiguration.openshift.io/role") == name), key=lambda m: m["metadata"]["name"])
    digest = hashlib.sha256(json.dumps([[m["metadata"]["name"], m.get("spec")] for m in configs],
                                       sort_keys=True).encode()).hexdigest()[:12]
    rendered = {"name": "rendered-%s-%s" % (name, digest),
                "source": [{"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
                            "name": m["metadata"]["name"]} for m in configs]}
    status = pool.raw.get("status") or {}
    machines = status.get("machineCount", 0)
    flags = lambda updated: {"conditions": [  # noqa: E731
        {"type": "Updated", "status": str(updated), "lastTransitionTime": now()},
        {"type": "Updating", "status": str(not updated), "lastTransitionTime": now()},
        {"type": "Degraded", "status": "False", "lastTransitionTime": now()}]}
    if ((pool.raw.get("spec") or {}).get("configuration") or {}).get("name") != rendered["name"]:
        generation = int((pool.raw.get("metadata") or {}).get("generation") or 1) + 1
        pool.patch({"metadata": {"generation": generation, "resourceVersion": emulator._bump()},
                    "spec": {"configuration": rendered},
                    "status": dict(flags(False), observedGeneration=generation, updatedMachineCount=0)})
    elif (status.get("configuration") or {}).get("name") != rendered["name"]:
        pool.patch({"metadata": {"resourceVersion": emulator._bump()},
                    "status": dict(flags(True), configuration=rendered, updatedMachineCount=machines,
                                   readyMachineCount=machines)})


async def _subscription(emulator, namespace, obj):
    spec = obj.raw.get("spec") or {}
    csv = spec.get("startingCSV")
    key = (resource_of(emulator, "operators.coreos.com/v1alpha1", "installplans"), namespace, "install-" + spec.get("name", "x"))
    if csv and key not in emulator._objects:
        emulator._objects[key] = {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "InstallPlan",
                                  "metadata": {"name": key[2], "namespace": namespace},
                                  "spec": {"approval": spec.get("installPlanApproval", "Manual"), "approved": False,
                                           "clusterServiceVersionNames": [csv]}}
        set_status(emulator, obj, {"state": "UpgradePending", "currentCSV": csv})


def write_kubeconfig(path, url):
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "emulator",
                        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
                        "users": [{"name": "emulator", "user": {"token": "emulator"}}]}, handle)


async def serve(args):
    scores = {name: float(rate) for name, _, rate in (s.partition("=") for s in args.eval_score)}
    emulator = KitchenEmulator(never_ready=set(args.never_ready), eval_scores=scores)
    load_discovery(emulator, args.crd_dir)
    for spec in args.node:
        name, _, gpus = spec.partition("=")
        capacity = {"cpu": "64", "memory": "512Gi"}
        # GPUS is a count of nvidia.com/gpu, or RESOURCE:COUNT,... of nvidia.com/<RESOURCE>
        # (mig-1g.10gb:7 is the mixed strategy's seven 1g.10gb slices).
        for part in filter(None, gpus.split(",")):
            resource, _, count = part.rpartition(":")
            if int(count) > 0:
                capacity["nvidia.com/" + (resource or "gpu")] = count
        emulator._objects[(kmock.resource("", "v1", "nodes"), None, name)] = {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}},
            "status": {"capacity": capacity, "allocatable": dict(capacity)}}
    async with emulator, kmock.Server(emulator, host="127.0.0.1", port=args.port) as server:
        url = "http://127.0.0.1:%d" % server.port
        write_kubeconfig(args.kubeconfig, url)
        print(json.dumps({"url": url, "kubeconfig": args.kubeconfig}), flush=True)
        controllers = asyncio.ensure_future(simulate_controllers(emulator))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        controllers.cancel()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--crd-dir", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", action="append", default=[], help="NAME=GPUS, a Node with that GPU capacity and allocatable; GPUS is a count or RESOURCE:COUNT,... "
                        "(e.g. mig-1g.10gb:7)")
    parser.add_argument("--never-ready", action="append", default=[], help="Kind/namespace/name or Kind/name")
    parser.add_argument("--eval-score", action="append", default=[],
                        help="FLAVOUR@VERSION=RATE, the pass rate its emulated evaluation reports (default 1.0)")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

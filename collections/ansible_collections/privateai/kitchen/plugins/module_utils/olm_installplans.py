#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Which InstallPlans of an operator pinned to one CSV may be approved: pure Python, standard
library only.

The same file is two things: the rule olm_operator's apply mode approves by (filter
`installplan_verdict`), and the in-cluster approver a GitOps render ships in a ConfigMap and
runs as a Job (`main()`; filter `incluster_script`). One rule, so the playbook and the GitOps
site never disagree on what "the pinned CSV" allows: a plan that installs exactly that CSV,
nothing else (an upgrade, or the pin plus something unpinned, stays unapproved).

In the Job (environment): KITCHEN_NAMESPACE, KITCHEN_SUBSCRIPTION, KITCHEN_STARTING_CSV,
KITCHEN_TIMEOUT (s, default 600), KITCHEN_INTERVAL (s, default 5), KITCHEN_API_URL (default the
in-cluster https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT), KITCHEN_TOKEN_FILE and
KITCHEN_CA_FILE (the pod's service-account token and the CA of the API's certificate). A token
is only ever sent over https. Prints one JSON line; exit status 0 once the plan of the pinned
CSV is approved (or the CSV installed), 1 when a plan names another CSV (approved: never) or
nothing approvable appears within the timeout, 2 on a set-up error.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

OLM = "/apis/operators.coreos.com/v1alpha1/namespaces/%s"


def plan_csvs(plan) -> list:
    return list(((plan or {}).get("spec") or {}).get("clusterServiceVersionNames") or [])


def _ours(plan, subscription) -> bool:
    """A plan OLM made for other Subscriptions of the namespace (ownerReferences) is theirs."""
    owners = [o for o in ((plan.get("metadata") or {}).get("ownerReferences") or []) if o.get("kind") == "Subscription"]
    return not subscription or not owners or any(o.get("name") == subscription for o in owners)


def installplan_verdict(plans, starting_csv, subscription=None) -> dict:
    """For InstallPlans as read from the cluster: `approve`, the names of the unapproved plans
    that install exactly `starting_csv`; `approved`, those of it already approved; `refused`,
    'name (csv, ...)' of each unapproved plan of `subscription` that names any other CSV;
    `pinned`, every plan of exactly `starting_csv`."""
    verdict = {"approve": [], "approved": [], "refused": [], "pinned": []}
    for plan in sorted(plans or [], key=lambda p: (p.get("metadata") or {}).get("name") or ""):
        if not _ours(plan, subscription):
            continue
        name, csvs = plan["metadata"]["name"], plan_csvs(plan)
        approved = bool((plan.get("spec") or {}).get("approved"))
        if csvs == [starting_csv]:
            verdict["approved" if approved else "approve"].append(name)
            verdict["pinned"].append(name)
        elif not approved:
            verdict["refused"].append("%s (%s)" % (name, ", ".join(csvs) or "no CSV"))
    return verdict


def _token(path):
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    return None


class _Api:
    def __init__(self, url, token_file=None, cafile=None):
        self.url, self.token_file = url.rstrip("/"), token_file
        self.context = ssl.create_default_context(cafile=cafile or None) if self.url.startswith("https://") else None

    def call(self, method, path, body=None, content_type="application/json"):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Accept": "application/json", "Content-Type": content_type})
        token = _token(self.token_file)
        if token:  # read each time: the kubelet renews a projected token before it expires
            request.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
            return json.loads(response.read().decode())


def _approve_pinned(api, namespace, subscription, starting_csv, result):
    """One look: approve what may be, and say whether the approver is done (True) or failed."""
    try:
        sub = api.call("GET", OLM % namespace + "/subscriptions/" + subscription)
    except urllib.error.HTTPError as exc:
        if exc.code in (403, 404):  # RBAC or Subscription of the same sync not there yet
            result["waiting"] = "Subscription %s/%s: HTTP %d" % (namespace, subscription, exc.code)
            return None
        raise
    pinned = (sub.get("spec") or {}).get("startingCSV")
    if pinned != starting_csv:
        result["error"] = "Subscription %s/%s pins %s, this approver %s: nothing approved" % (
            namespace, subscription, pinned, starting_csv)
        return False
    plans = api.call("GET", OLM % namespace + "/installplans").get("items") or []
    verdict = installplan_verdict(plans, starting_csv, subscription)
    for name in verdict["approve"]:
        api.call("PATCH", OLM % namespace + "/installplans/" + name, {"spec": {"approved": True}},
                 content_type="application/merge-patch+json")
    result["approved"] = result.get("approved", []) + verdict["approve"]
    result["already_approved"] = verdict["approved"]
    if verdict["refused"]:
        result["refused"] = verdict["refused"]
        result["error"] = "InstallPlan not approved, it names another CSV than the pinned %s: %s" % (
            starting_csv, "; ".join(verdict["refused"]))
        return False
    installed = (sub.get("status") or {}).get("installedCSV")
    result["waiting"] = "no InstallPlan of %s yet (plans: %s)" % (
        starting_csv, ", ".join("%s (%s)" % (p["metadata"]["name"], ", ".join(plan_csvs(p))) for p in plans) or "none")
    return True if verdict["pinned"] or installed == starting_csv else None


def main():
    namespace, subscription = os.environ["KITCHEN_NAMESPACE"], os.environ["KITCHEN_SUBSCRIPTION"]
    starting_csv = os.environ["KITCHEN_STARTING_CSV"]
    timeout, interval = float(os.environ.get("KITCHEN_TIMEOUT", "600")), float(os.environ.get("KITCHEN_INTERVAL", "5"))
    url = os.environ.get("KITCHEN_API_URL") or "https://%s:%s" % (
        os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc"), os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
    token_file = os.environ.get("KITCHEN_TOKEN_FILE")
    result = {"namespace": namespace, "subscription": subscription, "starting_csv": starting_csv, "ok": False}
    if _token(token_file) and not url.startswith("https://"):
        result["error"] = "refusing to send the service-account token over plain HTTP: %s" % url
        print(json.dumps(result))
        return 2
    api = _Api(url, token_file, os.environ.get("KITCHEN_CA_FILE"))
    deadline = time.monotonic() + timeout
    try:
        while True:
            done = _approve_pinned(api, namespace, subscription, starting_csv, result)
            if done is not None or time.monotonic() >= deadline:
                break
            time.sleep(interval)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        result["error"] = "%s: %s" % (type(exc).__name__, exc)
        print(json.dumps(result))
        return 2
    result["ok"] = bool(done)
    if done:
        result.pop("waiting", None)
    elif done is None:
        result["error"] = "nothing approved within %g s: %s" % (timeout, result.pop("waiting"))
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

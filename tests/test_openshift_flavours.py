"""Phase 3 on OpenShift, proven without a cluster: the OpenShift sample with the cluster fixture
(a tiny, complete model and the sample's flavours for it, tools/make-test-adapters
--cluster-fixture) bundled by playbooks/bundle.yml; phase 3 gates every version against the
bundle and renders the LoRA-capable InferenceService, the adapter volume, the flavours in service
and the flavour Job - strictly valid against the upstream CRDs, for both KServe lines."""

import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, crd_dir, role_dir, run_playbook, tree_digest

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import (
    CrdCatalog,
    load_tree,
    validate_manifest,
    validate_tree,
)

pytestmark = pytest.mark.playbook
SAMPLE = "inventories/openshift-sample"
OVERLAY = ROOT / "tests" / "fixtures" / "cluster-flavours" / "overlay.yml"


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    """The generated fixture and its bundle."""
    folder = tmp_path_factory.mktemp("cluster-fixture")
    subprocess.run([sys.executable, str(ROOT / "tools" / "make-test-adapters"), str(folder), "--cluster-fixture"],
                   check=True, capture_output=True)
    (folder / "overlay.yml").write_text(OVERLAY.read_text())
    run = run_playbook(SAMPLE, "bundle.yml", *fixture_args(folder))
    assert run.rc == 0, run.output
    return folder


def fixture_args(folder, *extra):
    return ("-e", "cluster_fixture_dir=%s" % folder, "-e", "@%s" % (folder / "overlay.yml"), *extra)


def render_phase3(folder, out, *extra):
    # The gate's copies and, in render mode, the serving state beside each render folder.
    return run_playbook(SAMPLE, "phase3.yml", *fixture_args(folder, "-e", "kitchen_delivery=render",
                                                            "-e", "kitchen_render_dir=%s" % out,
                                                            "-e", "kserve_lora_work_dir=%s-work" % out, *extra))


def by_kind(out):
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in load_tree(str(out))}


@pytest.fixture(scope="module")
def rendered(fixture_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("render")
    run = render_phase3(fixture_dir, out)
    assert run.rc == 0, run.output
    return out, by_kind(out)


def test_everything_is_strictly_valid(rendered):
    out, manifests = rendered
    count, errors = validate_tree(str(out), "1.31", CrdCatalog(str(crd_dir())))
    assert count == len(manifests) and [str(e) for e in errors] == []


def test_the_model_is_served_lora_capable_with_the_flavours_a_restart_comes_back_to(rendered):
    _, manifests = rendered
    isvc = manifests[("InferenceService", "tiny-llama")]["spec"]["predictor"]
    assert isvc["model"]["args"][-6:] == ["--enable-lora", "--max-loras=4", "--max-lora-rank=16", "--max-cpu-loras=8",
                                          "--config", "/etc/kitchen/flavours/serving.yaml"]
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "true"} in isvc["model"]["env"]
    flavours = manifests[("ConfigMap", "tiny-llama-flavours")]["data"]
    # vLLM's --config turns each list item into one --lora-modules value: a JSON object each.
    modules = [json.loads(item) for item in yaml.safe_load(flavours["serving.yaml"])["lora-modules"]]
    assert modules == [
        {"name": "helpdesk", "path": "/mnt/lora/helpdesk/1.1.0", "base_model_name": "tiny-llama"},
        {"name": "summarise", "path": "/mnt/lora/summarise/1.0.0", "base_model_name": "tiny-llama"}]
    assert json.loads(flavours["flavours.json"]) == {m["name"]: m["path"] for m in modules}
    # Every declared version travels (a switch or a rollback moves no bytes), each file by sha256.
    listed = [line.split("  ")[1] for line in flavours["SHA256SUMS"].splitlines()]
    assert sorted({path.rsplit("/", 1)[0] for path in listed}) == ["helpdesk/1.0.0", "helpdesk/1.1.0", "summarise/1.0.0"]


def test_before_kserve_0_16_an_init_container_syncs_the_adapter_volume(rendered):
    _, manifests = rendered
    predictor = manifests[("InferenceService", "tiny-llama")]["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "pvc://tiny-llama-weights/" and "storageUris" not in predictor
    (sync,) = predictor["initContainers"]
    env = {e["name"]: e.get("value") for e in sync["env"]}
    assert (env["KITCHEN_BUCKET"], env["KITCHEN_PREFIX"], env["KITCHEN_SUMS_FILE"]) == (
        "kitchen-lora", "lora/", "/etc/kitchen/flavours/SHA256SUMS")
    volumes = {v["name"]: v for v in predictor["volumes"]}
    assert volumes["adapters"]["persistentVolumeClaim"]["claimName"] == "tiny-llama-adapters"
    assert {"name": "adapters", "mountPath": "/mnt/lora", "readOnly": True} in predictor["model"]["volumeMounts"]


def kserve_0_16(folder):
    """The site on the KServe 0.16 line (the one variable both roles read)."""
    path = folder / "kserve-0.16.yml"
    path.write_text(yaml.safe_dump({"kitchen_openshift_ai": {"kserve_version": "0.16",
                                                             "applications_namespace": "redhat-ods-applications"}}))
    return ("-e", "@%s" % path)


@pytest.fixture(scope="module")
def rendered_0_16(fixture_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("render-0.16")
    run = render_phase3(fixture_dir, out / "tree", *kserve_0_16(out))
    assert run.rc == 0, run.output
    return out / "tree", by_kind(out / "tree")


def wave(manifest):
    return int(manifest["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def volume_writers(manifests, claim):
    """(Job, container) of every container that mounts the PVC `claim` writable."""
    out = []
    for (kind, _), doc in sorted(manifests.items()):
        if kind != "Job":
            continue
        pod = doc["spec"]["template"]["spec"]
        names = {v["name"] for v in pod.get("volumes", []) if v.get("persistentVolumeClaim", {}).get("claimName") == claim}
        out += [(doc, c) for c in pod.get("initContainers", []) + pod["containers"]
                if any(m["name"] in names and not m.get("readOnly") for m in c.get("volumeMounts", []))]
    return out


def test_from_kserve_0_16_the_adapter_files_are_on_the_volume_before_vllm_reads_them(rendered_0_16):
    """vLLM opens every --lora-modules path at start and no init container fills a storage URI:
    whatever writes the adapter volume runs in an earlier sync wave than the InferenceService,
    and writes (at least) every folder the served --lora-modules name."""
    _, manifests = rendered_0_16
    isvc = manifests[("InferenceService", "tiny-llama")]
    mount = next(u["mountPath"] for u in isvc["spec"]["predictor"]["storageUris"] if u["uri"] == "pvc://tiny-llama-adapters/")
    config = manifests[("ConfigMap", "tiny-llama-flavours")]
    modules = [json.loads(item)["path"] for item in yaml.safe_load(config["data"]["serving.yaml"])["lora-modules"]]
    writers = volume_writers(manifests, "tiny-llama-adapters")
    assert writers and all(wave(job) < wave(isvc) for job, _ in writers), [
        (job["metadata"]["name"], wave(job)) for job, _ in writers]
    for job, container in writers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        sums_dir = env["KITCHEN_SUMS_FILE"].rsplit("/", 1)[0]
        mounted = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == sums_dir)
        source = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == mounted)
        assert source["configMap"]["name"] == "tiny-llama-flavours" and env["KITCHEN_TARGET"] == mount
        written = {"%s/%s" % (mount, line.split("  ", 1)[1].rsplit("/", 1)[0])
                   for line in config["data"]["SHA256SUMS"].splitlines()}
        assert set(modules) <= written and written == {
            "/mnt/lora/helpdesk/1.0.0", "/mnt/lora/helpdesk/1.1.0", "/mnt/lora/summarise/1.0.0"}
    # Named by content (a Job's template is immutable): another SHA256SUMS is another Job.
    (fill,) = {job["metadata"]["name"] for job, _ in writers}
    assert fill.startswith("tiny-llama-adapters-") and len(fill) == len("tiny-llama-adapters-") + 8


def test_from_kserve_0_16_the_adapter_volume_is_a_second_storage_uri(rendered_0_16):
    tmp_path, manifests = rendered_0_16
    predictor = manifests[("InferenceService", "tiny-llama")]["spec"]["predictor"]
    assert predictor["storageUris"] == [{"uri": "pvc://tiny-llama-weights/", "mountPath": "/mnt/models"},
                                        {"uri": "pvc://tiny-llama-adapters/", "mountPath": "/mnt/lora"}]
    assert "storageUri" not in predictor["model"] and "initContainers" not in predictor
    count, errors = validate_tree(str(tmp_path), "1.31", CrdCatalog(str(crd_dir())))
    assert [str(e) for e in errors] == []


def test_a_switch_is_a_new_flavour_job_and_the_same_volume(fixture_dir, rendered, tmp_path):
    _, before = rendered
    overlay = yaml.safe_load((fixture_dir / "overlay.yml").read_text())
    overlay["kitchen_adapters"][0]["serving_version"] = "1.0.0"  # helpdesk back to 1.0.0
    (tmp_path / "switch.yml").write_text(yaml.safe_dump(overlay))
    run = render_phase3(fixture_dir, tmp_path / "out", "-e", "@%s" % (tmp_path / "switch.yml"))
    assert run.rc == 0, run.output
    after = by_kind(tmp_path / "out")
    jobs = [sorted(n for k, n in m if k == "Job" and "-flavours-" in n) for m in (before, after)]
    assert len(jobs[0]) == len(jobs[1]) == 1 and jobs[0] != jobs[1]
    assert json.loads(after[("ConfigMap", "tiny-llama-flavours")]["data"]["flavours.json"])["helpdesk"] \
        == "/mnt/lora/helpdesk/1.0.0"
    for key in [("InferenceService", "tiny-llama"), ("PersistentVolumeClaim", "tiny-llama-adapters")]:
        assert after[key]["spec"] == before[key]["spec"]  # no restart, the same volume
    assert after[("ConfigMap", "tiny-llama-flavours")]["data"]["SHA256SUMS"] \
        == before[("ConfigMap", "tiny-llama-flavours")]["data"]["SHA256SUMS"]


def test_second_render_changes_nothing(fixture_dir, rendered):
    out, _ = rendered
    before = tree_digest(out)
    run = render_phase3(fixture_dir, out)
    assert run.rc == 0, run.output
    assert tree_digest(out) == before
    assert "changed=0" in run.output


def test_an_over_rank_adapter_is_refused_before_anything_changes(fixture_dir, rendered, tmp_path):
    out, _ = rendered
    before = tree_digest(out)
    overlay = yaml.safe_load((fixture_dir / "overlay.yml").read_text())
    overlay["kitchen_adapters"].append({"name": "over-rank", "base_model": "tiny-llama", "versions": ["1.0.0"],
                                        "serving_version": "1.0.0", "eval_set": "helpdesk/helpdesk.jsonl"})
    overlay["kitchen_bundle"]["adapters"].append(
        {"name": "over-rank", "version": "1.0.0", "path": "{{ cluster_fixture_dir }}/over-rank/1.0.0"})
    (tmp_path / "over-rank.yml").write_text(yaml.safe_dump(overlay))
    bundled = run_playbook(SAMPLE, "bundle.yml", *fixture_args(fixture_dir, "-e", "@%s" % (tmp_path / "over-rank.yml")))
    assert bundled.rc == 0, bundled.output
    run = render_phase3(fixture_dir, out, "-e", "@%s" % (tmp_path / "over-rank.yml"))
    assert run.rc != 0
    assert "over-rank 1.0.0 refused" in run.output and "max_lora_rank 16" in run.output
    assert tree_digest(out) == before


def test_switch_script_reports_an_unreachable_server(tmp_path):
    (tmp_path / "flavours.json").write_text(json.dumps({"helpdesk": "/mnt/lora/helpdesk/1.1.0"}))
    env = {"KITCHEN_URL": "http://127.0.0.1:9", "KITCHEN_MODEL": "granite", "KITCHEN_TIMEOUT": "5",
           "KITCHEN_FLAVOURS": str(tmp_path / "flavours.json"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(role_dir("kserve_lora") / "files" / "switch_flavours.py")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["ok"] is False and "Connection refused" in result["error"]


class AdapterApi:
    """vLLM's runtime adapter API as documented (docs/features/lora.md; serving_models.py): a
    stand-in, since vLLM needs a GPU. LoRA cards carry root = path, parent = base model."""

    def __init__(self, base, loaded, refuse=None, answers=None, tls=None, token=None):
        import http.server
        import threading

        self.base, self.loaded, self.calls, self.refuse = base, dict(loaded), [], refuse or {}
        self.answers = answers or {}  # chat completions: the answer of each adapter path
        self.authorizations = []  # the Authorization header of every request
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = (json.dumps(body) if not isinstance(body, str) else body).encode()
                self.send_response(status)
                self.end_headers()
                self.wfile.write(data)

            def refused(self):
                """The auth proxy's answer to a request without the expected bearer token."""
                api.authorizations.append(self.headers.get("Authorization"))
                if token and self.headers.get("Authorization") != "Bearer " + token:
                    self.reply(401, {"error": "Unauthorized"})
                    return True
                return False

            def do_GET(self):
                if self.refused():
                    return
                cards = [{"id": api.base, "root": "/mnt/models", "parent": None}] + [
                    {"id": name, "root": path, "parent": api.base} for name, path in api.loaded.items()]
                self.reply(200, {"object": "list", "data": cards})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.refused():
                    return
                api.calls.append((self.path, body))
                if self.path == "/v1/chat/completions":
                    path = "/mnt/models" if body["model"] == api.base else api.loaded.get(body["model"])
                    if path is None:
                        return self.reply(404, {"error": "The model `%s` does not exist." % body["model"]})
                    return self.reply(200, {"model": body["model"], "choices": [
                        {"message": {"role": "assistant", "content": api.answers.get(path, "")}}]})
                if self.path == "/v1/unload_lora_adapter":
                    if api.loaded.pop(body["lora_name"], None) is None:
                        return self.reply(404, {"error": "not loaded"})
                    return self.reply(200, "Success: LoRA adapter '%s' removed successfully." % body["lora_name"])
                if body["lora_name"] in api.loaded:
                    return self.reply(400, {"error": "already loaded"})
                if body["lora_name"] in api.refuse:
                    return self.reply(400, {"error": api.refuse[body["lora_name"]]})
                api.loaded[body["lora_name"]] = body["lora_path"]
                return self.reply(200, "Success: LoRA adapter '%s' added successfully." % body["lora_name"])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:  # as the auth proxy in front of the predictor: HTTPS with a certificate of `tls`
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls["cert"]), str(tls["key"]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.server.server_port)


def switch(tmp_path, api, wanted, **env):
    (tmp_path / "flavours.json").write_text(json.dumps(wanted))
    env.update({"KITCHEN_URL": api.url, "KITCHEN_MODEL": api.base, "KITCHEN_FLAVOURS": str(tmp_path / "flavours.json"),
                "PATH": "/usr/bin:/bin"})
    proc = subprocess.run([sys.executable, str(role_dir("kserve_lora") / "files" / "switch_flavours.py")],
                          env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout)


def test_switch_script_loads_switches_and_retires_without_touching_the_rest(tmp_path):
    api = AdapterApi("granite", {"helpdesk": "/mnt/lora/helpdesk/1.0.0", "summarise": "/mnt/lora/summarise/1.0.0",
                                 "retired": "/mnt/lora/retired/1.0.0"})
    wanted = {"helpdesk": "/mnt/lora/helpdesk/1.1.0", "summarise": "/mnt/lora/summarise/1.0.0",
              "classify": "/mnt/lora/classify/1.0.0"}
    rc, result = switch(tmp_path, api, wanted)
    assert rc == 0 and result["ok"] is True and result["serving"] == wanted == api.loaded
    assert (result["loaded"], result["unloaded"], result["kept"]) == (["classify"], ["retired"], ["summarise"])
    assert result["switched"] == [{"flavour": "helpdesk", "from": "/mnt/lora/helpdesk/1.0.0",
                                   "to": "/mnt/lora/helpdesk/1.1.0"}]
    assert ("/v1/load_lora_adapter", {"lora_name": "summarise", "lora_path": "/mnt/lora/summarise/1.0.0"}) \
        not in api.calls
    api.calls.clear()
    rc, result = switch(tmp_path, api, wanted)
    assert rc == 0 and api.calls == [] and result["kept"] == sorted(wanted)


def test_switch_script_fails_when_the_server_refuses_an_adapter(tmp_path):
    api = AdapterApi("granite", {}, refuse={"wide": "LoRA rank 64 is greater than max_lora_rank 16"})
    rc, result = switch(tmp_path, api, {"helpdesk": "/mnt/lora/helpdesk/1.1.0", "wide": "/mnt/lora/wide/1.0.0"})
    assert rc == 1 and result["ok"] is False
    assert result["error"].startswith("400 ") and "greater than max_lora_rank 16" in result["error"]
    assert api.loaded == {"helpdesk": "/mnt/lora/helpdesk/1.1.0"}  # what loaded before the refusal stays


@pytest.fixture
def auth_proxy(tmp_path):
    """The predictor as the Jobs meet it: HTTPS with a certificate of a CA of its own (as the
    service CA signs the auth proxy's), answering only a bearer token, plus that token's file."""
    from s3server import make_ca_and_server_cert

    (tmp_path / "tls").mkdir()
    tls = make_ca_and_server_cert(tmp_path / "tls")
    (tmp_path / "token").write_text("caller-token\n")
    api = AdapterApi("granite", {}, answers={"/mnt/models": "Tomatoes, onion, basil."}, tls=tls, token="caller-token")
    yield api, {"KITCHEN_TOKEN_FILE": str(tmp_path / "token"), "KITCHEN_CA_FILE": str(tls["ca"])}
    api.server.shutdown()


def test_the_flavour_jobs_call_the_predictor_over_verified_tls_with_their_token(tmp_path, auth_proxy):
    api, auth = auth_proxy
    rc, result = switch(tmp_path, api, {"helpdesk": "/mnt/lora/helpdesk/1.1.0"}, **auth)
    assert rc == 0 and result["ok"] is True, result
    assert set(api.authorizations) == {"Bearer caller-token"}
    # Without the CA that signed the proxy's certificate, nothing is sent.
    api.authorizations.clear()
    rc, result = switch(tmp_path, api, {"helpdesk": "/mnt/lora/helpdesk/1.1.0"},
                        KITCHEN_TOKEN_FILE=auth["KITCHEN_TOKEN_FILE"])
    assert rc == 1 and "CERTIFICATE_VERIFY_FAILED" in result["error"] and api.authorizations == []


def test_a_token_never_travels_over_plain_http(tmp_path, auth_proxy):
    _, auth = auth_proxy
    plain = AdapterApi("granite", {})
    rc, result = switch(tmp_path, plain, {"helpdesk": "/mnt/lora/helpdesk/1.1.0"}, **auth)
    assert rc == 2 and "plain HTTP" in result["error"]
    taste = run_taste(plain, **auth)
    assert taste["ok"] is False and "plain HTTP" in taste["error"]
    assert plain.authorizations == []
    plain.server.shutdown()


def run_taste(api, **env):
    env.update({"KITCHEN_URL": api.url, "KITCHEN_MODEL": api.base, "KITCHEN_TIMEOUT": "10", "PATH": "/usr/bin:/bin"})
    proc = subprocess.run([sys.executable, str(role_dir("smoke_test") / "files" / "taste.py")],
                          env=env, capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout)


def test_the_taste_test_asks_over_verified_tls_with_its_token(auth_proxy):
    api, auth = auth_proxy
    result = run_taste(api, **auth)
    assert result["ok"] is True and result["answer"] == "Tomatoes, onion, basil.", result
    assert set(api.authorizations) == {"Bearer caller-token"}
    result = run_taste(api, KITCHEN_TOKEN_FILE=auth["KITCHEN_TOKEN_FILE"])
    assert result["ok"] is False and "CERTIFICATE_VERIFY_FAILED" in result["error"]
    result = run_taste(api, KITCHEN_CA_FILE=auth["KITCHEN_CA_FILE"])  # no token: the proxy says 401
    assert result["ok"] is False and "401" in result["error"]


from test_emulator import site_vars  # noqa: E402


def cluster_flavours(kubeconfig):
    """state.json and flavours.json of the flavours ConfigMap, the evaluations kept, and the
    names of the evaluation Jobs run so far."""
    import kubernetes

    api = kubernetes.config.new_client_from_config(str(kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    data = core.read_namespaced_config_map("tiny-llama-flavours", "kitchen-platform").data
    evaluations = json.loads(core.read_namespaced_config_map("tiny-llama-flavour-evaluations", "kitchen-platform")
                             .data["evaluations.json"])
    jobs = sorted(j.metadata.name for j in kubernetes.client.BatchV1Api(api).list_namespaced_job("kitchen-platform").items
                  if "-evaluate-" in j.metadata.name)
    scores = {(f, v): e["result"]["pass_rate"] for f, versions in evaluations.items() for v, e in versions.items()}
    return json.loads(data["state.json"]), json.loads(data["flavours.json"]), scores, jobs


def applied(kubeconfig, api_version, kind, name):
    """An object as the cluster holds it, less what the server adds."""
    import kubernetes

    client = kubernetes.dynamic.DynamicClient(kubernetes.config.new_client_from_config(str(kubeconfig)))
    found = client.resources.get(api_version=api_version, kind=kind).get(name=name, namespace="kitchen-platform").to_dict()
    found.pop("status", None)
    found["metadata"] = {k: v for k, v in found["metadata"].items() if k in ("name", "namespace", "labels", "annotations")}
    return found


def said(run):
    return " ".join(run.output.split())


# helpdesk 1.0.0 answers one of its two evaluation cases in the emulated evaluation Job.
@pytest.mark.parametrize("emulator", [{"eval_scores": {"helpdesk@1.0.0": 0.5}}], indirect=True)
def test_switch_evaluate_refuse_force_and_roll_back_with_the_state_in_the_cluster(fixture_dir, emulator, tmp_path):
    """Applied through kubernetes.core to the API emulator: versions are evaluated in the
    cluster (before a switch, or once a first version serves), a worse one is refused until
    forced, the state and the results live in ConfigMaps, so the rollback finds the version a
    switch left and nothing is evaluated twice."""
    cluster = ("-e", site_vars(emulator["kubeconfig"]), "-e", "kserve_lora_work_dir=%s" % (tmp_path / "work"))
    # A dry run on a cluster without flavours gates, says what it would serve, creates nothing.
    run = run_playbook(SAMPLE, "phase3.yml", "--check", *fixture_args(fixture_dir, *cluster))
    assert run.rc == 0, run.output
    assert "; helpdesk (new) -> 1.1.0; summarise (new) -> 1.0.0; would evaluate: helpdesk@1.1.0, summarise@1.0.0" \
        in said(run)
    import kubernetes
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(emulator["kubeconfig"])))
    assert core.list_namespaced_config_map("kitchen-platform").items == []

    run = run_playbook(SAMPLE, "phase3.yml", *fixture_args(fixture_dir, *cluster))
    assert run.rc == 0, run.output
    assert "; helpdesk (new) -> 1.1.0; summarise (new) -> 1.0.0; evaluated once serving: helpdesk@1.1.0" in said(run)
    state, served, scores, jobs = cluster_flavours(emulator["kubeconfig"])
    assert state == {"helpdesk": {"version": "1.1.0", "previous": []}, "summarise": {"version": "1.0.0", "previous": []}}
    assert scores == {("helpdesk", "1.1.0"): 1.0, ("summarise", "1.0.0"): 1.0} and len(jobs) == 1
    first_evaluation = jobs
    # The evaluation Job and its inputs as applied: strictly valid, each version's files synced.
    job, inputs = applied(emulator["kubeconfig"], "batch/v1", "Job", jobs[0]), \
        applied(emulator["kubeconfig"], "v1", "ConfigMap", "tiny-llama-evaluation")
    assert [str(e) for e in validate_manifest(job, "1.31", None) + validate_manifest(inputs, "1.31", None)] == []
    assert sorted(json.loads(inputs["data"]["candidates.json"])) == ["helpdesk@1.1.0", "summarise@1.0.0"]
    assert {line.split("  ")[1].rsplit("/", 1)[0] for line in inputs["data"]["SHA256SUMS"].splitlines()} \
        == {"helpdesk/1.1.0", "summarise/1.0.0"}

    overlay = yaml.safe_load((fixture_dir / "overlay.yml").read_text())
    overlay["kitchen_adapters"][0]["serving_version"] = "1.0.0"
    (tmp_path / "switch.yml").write_text(yaml.safe_dump(overlay))
    switched = ("-e", "@%s" % (tmp_path / "switch.yml"))
    # 1.0.0 is evaluated beside 1.1.0 before the switch, scores 50% against 100%: refused.
    run = run_playbook(SAMPLE, "phase3.yml", *fixture_args(fixture_dir, *cluster, *switched))
    assert run.rc != 0
    assert "helpdesk 1.0.0 scores 50% (1/2), 1.1.0 in service scores 100%: more than the tolerance 5% worse" \
        in said(run) and "-e kserve_lora_force=true" in run.output
    state, served, scores, jobs = cluster_flavours(emulator["kubeconfig"])
    assert state["helpdesk"]["version"] == "1.1.0" and served["helpdesk"] == "/mnt/lora/helpdesk/1.1.0"
    assert scores[("helpdesk", "1.0.0")] == 0.5  # measured, kept, not switched to
    # A new evaluation Job ran; the finished one it replaces was cleaned up.
    assert len(jobs) == 1 and jobs != first_evaluation
    evaluated = jobs

    run = run_playbook(SAMPLE, "phase3.yml", *fixture_args(fixture_dir, *cluster, *switched,
                                                           "-e", "kserve_lora_force=true"))
    assert run.rc == 0, run.output
    assert "serving helpdesk 1.0.0, summarise 1.0.0; helpdesk 1.1.0 -> 1.0.0 (50% passed, was 100%, forced)" \
        in said(run)
    state, served, scores, jobs = cluster_flavours(emulator["kubeconfig"])
    assert state["helpdesk"] == {"version": "1.0.0", "previous": ["1.1.0"]}
    assert served["helpdesk"] == "/mnt/lora/helpdesk/1.0.0" and jobs == evaluated  # the kept result was enough

    run = run_playbook(SAMPLE, "rollback.yml", *fixture_args(fixture_dir, *cluster, *switched, "-e", "flavour=helpdesk"))
    assert run.rc == 0, run.output
    assert "; helpdesk 1.0.0 -> 1.1.0 (100% passed, was 50%)" in said(run)
    state, served, scores, jobs = cluster_flavours(emulator["kubeconfig"])
    assert state["helpdesk"] == {"version": "1.1.0", "previous": []}
    assert served["helpdesk"] == "/mnt/lora/helpdesk/1.1.0" and jobs == evaluated

    run = run_playbook(SAMPLE, "rollback.yml", *fixture_args(fixture_dir, *cluster, "-e", "flavour=summarise"))
    assert run.rc != 0 and "summarise never served another version; nothing to return to" in run.output
    # Back at the inventory's versions: phase 3 again changes nothing and evaluates nothing.
    run = run_playbook(SAMPLE, "phase3.yml", *fixture_args(fixture_dir, *cluster))
    assert run.rc == 0, run.output
    assert "changed=0" in run.output, run.output
    assert cluster_flavours(emulator["kubeconfig"])[3] == evaluated


def test_from_kserve_0_16_the_adapter_fill_job_completes_before_the_predictor_is_created(fixture_dir, emulator,
                                                                                          tmp_path):
    """Applied to the API emulator, which keeps the order of every change it stores: the Job
    that fills the adapter volume is Complete before the InferenceService exists."""
    run = run_playbook(SAMPLE, "phase3.yml", *fixture_args(fixture_dir, "-e", site_vars(emulator["kubeconfig"]),
                                                           "-e", "kserve_lora_work_dir=%s" % (tmp_path / "work"),
                                                           *kserve_0_16(tmp_path)))
    assert run.rc == 0, run.output
    from test_emulator import get
    history = get(emulator["url"], "/emulator/history")["items"]
    created = next(e["resourceVersion"] for e in history
                   if (e["kind"], e["name"], e["type"]) == ("InferenceService", "tiny-llama", "ADDED"))
    completed = [e["resourceVersion"] for e in history if e["kind"] == "Job"
                 and e["name"].startswith("tiny-llama-adapters-") and "Complete" in e["conditions"]]
    assert completed and completed[0] < created, history


def test_evaluation_script_scores_each_version_beside_the_flavours_in_service(tmp_path):
    """evaluate_flavours.py as the evaluation Job runs it (flavour_checks.py beside it, the
    inputs as the ConfigMap mounts them) against vLLM's adapter and chat API."""
    scripts = tmp_path / "opt"
    scripts.mkdir()
    for name in ("evaluate_flavours.py", "flavour_checks.py"):
        (scripts / name).write_text((role_dir("kserve_lora") / "files" / name).read_text())
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "eval.helpdesk.helpdesk.jsonl").write_text(
        '{"prompt": "How do I reset my password?", "expect": ["password"]}\n'
        '{"prompt": "Who do I call?", "pattern": "service ?desk"}\n')
    (inputs / "candidates.json").write_text(json.dumps({
        "helpdesk@1.0.0": {"path": "/mnt/lora/helpdesk/1.0.0", "eval_set": "eval.helpdesk.helpdesk.jsonl"},
        "helpdesk@1.1.0": {"path": "/mnt/lora/helpdesk/1.1.0", "eval_set": "eval.helpdesk.helpdesk.jsonl"},
        "wide@1.0.0": {"path": "/mnt/lora/wide/1.0.0", "eval_set": "eval.helpdesk.helpdesk.jsonl"}}))
    # 1.1.0 answers both cases, 1.0.0 only the first; vLLM refuses to load wide.
    answers = {"/mnt/lora/helpdesk/1.1.0": "Reset the password, or call the service desk.",
               "/mnt/lora/helpdesk/1.0.0": "Reset the password."}
    api = AdapterApi("granite", {"helpdesk": "/mnt/lora/helpdesk/1.1.0"}, answers=answers,
                     refuse={"wide@1.0.0": "LoRA rank 64 is greater than max_lora_rank 16"})
    env = {"KITCHEN_URL": api.url, "KITCHEN_MODEL": "granite", "KITCHEN_CANDIDATES": str(inputs / "candidates.json"),
           "KITCHEN_EVAL_DIR": str(inputs), "KITCHEN_MAX_TOKENS": "32", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(scripts / "evaluate_flavours.py")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    results = report["results"]
    assert (results["helpdesk@1.1.0"]["passed"], results["helpdesk@1.0.0"]["passed"]) == (2, 1)
    assert results["helpdesk@1.0.0"]["pass_rate"] == 0.5 and results["helpdesk@1.0.0"]["failures"][0]["prompt"] \
        == "Who do I call?"
    assert report["ok"] is False and "greater than max_lora_rank 16" in report["errors"]["wide@1.0.0"]
    # Asked by candidate name at temperature 0; afterwards only the flavour in service is loaded.
    asked = [body for path, body in api.calls if path == "/v1/chat/completions"]
    assert {b["model"] for b in asked} == {"helpdesk@1.0.0", "helpdesk@1.1.0"} and {b["temperature"] for b in asked} == {0}
    assert api.loaded == {"helpdesk": "/mnt/lora/helpdesk/1.1.0"}


@pytest.fixture(scope="module")
def whole_site(fixture_dir, tmp_path_factory):
    """site.yml (phases 1-3) of the sample with the cluster fixture, rendered into one tree."""
    out = tmp_path_factory.mktemp("whole-site")
    run = run_playbook(SAMPLE, "site.yml", *fixture_args(fixture_dir, "-e", "kitchen_delivery=render",
                                                         "-e", "kitchen_render_dir=%s" % out,
                                                         "-e", "kserve_lora_work_dir=%s-work" % out))
    assert run.rc == 0, run.output
    return out


def test_every_object_is_rendered_exactly_once_across_the_phase_folders(whole_site):
    owners = {}
    for path, doc in load_tree(str(whole_site)):
        key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        owners.setdefault(key, []).append(str(path).replace(str(whole_site) + "/", ""))
    twice = {key: paths for key, paths in owners.items() if len(paths) > 1}
    assert twice == {}
    # The model's serving has one owner, kserve_vllm in phase 2, LoRA-capable since phase 3 ran.
    assert not (whole_site / "phase3" / "kserve_vllm").exists()
    (isvc,) = [p for k, p in owners.items() if k[0] == "InferenceService" and k[2] == "tiny-llama"]
    assert isvc[0].startswith("phase2/kserve_vllm/")
    doc = yaml.safe_load((whole_site / isvc[0]).read_text())
    assert "--enable-lora" in doc["spec"]["predictor"]["model"]["args"]


def test_phase2_again_keeps_what_phase3_serves(fixture_dir, whole_site):
    """Phase 2 reads what is served through serving_state, so rerunning it after phase 3 changes
    nothing: the two phases never fight over the InferenceService."""
    before = tree_digest(whole_site)
    run = run_playbook(SAMPLE, "phase2.yml", *fixture_args(fixture_dir, "-e", "kitchen_delivery=render",
                                                           "-e", "kitchen_render_dir=%s" % whole_site))
    assert run.rc == 0, run.output
    assert tree_digest(whole_site) == before
    assert "changed=0" in run.output


@pytest.mark.parametrize("strategy,profile,resource", [
    ("single", None, "nvidia.com/gpu"),  # single advertises the slices as nvidia.com/gpu: as before
    ("mixed", "1g.10gb", "nvidia.com/mig-1g.10gb"),
])
def test_a_mig_profile_is_requested_as_its_slice(fixture_dir, rendered, tmp_path, strategy, profile, resource):
    overlay = yaml.safe_load((fixture_dir / "overlay.yml").read_text())
    overlay["kitchen_models"][0]["resources"].update({"gpus": 1}, **({"mig_profile": profile} if profile else {}))
    overlay["kitchen_gpu"] = {"mig_strategy": strategy, "node_selector": {"nvidia.com/gpu.present": "true"},
                              "nodes": ["gpu-node-1.acme.internal"], **({"mig_config": "all-1g.10gb"} if profile else {})}
    (tmp_path / "mig.yml").write_text(yaml.safe_dump(overlay))
    run = render_phase3(fixture_dir, tmp_path / "out", "-e", "@%s" % (tmp_path / "mig.yml"))
    assert run.rc == 0, run.output
    predictor = by_kind(tmp_path / "out")[("InferenceService", "tiny-llama")]["spec"]["predictor"]
    resources = predictor["model"]["resources"]
    assert resources["requests"][resource] == resources["limits"][resource] == "1"
    assert [k for k in resources["limits"] if k.startswith("nvidia.com/")] == [resource]
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert "--tensor-parallel-size" not in " ".join(predictor["model"]["args"])

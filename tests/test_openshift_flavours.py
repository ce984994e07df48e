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

from conftest import ROOT, crd_dir, run_playbook, tree_digest

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import (
    CrdCatalog,
    load_tree,
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


def test_from_kserve_0_16_the_adapter_volume_is_a_second_storage_uri(fixture_dir, tmp_path):
    run = render_phase3(fixture_dir, tmp_path, "-e", "kserve_vllm_kserve_version=0.16")
    assert run.rc == 0, run.output
    predictor = by_kind(tmp_path)[("InferenceService", "tiny-llama")]["spec"]["predictor"]
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
    proc = subprocess.run([sys.executable, str(ROOT / "roles" / "kserve_lora" / "files" / "switch_flavours.py")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["ok"] is False and "Connection refused" in result["error"]


class AdapterApi:
    """vLLM's runtime adapter API as documented (docs/features/lora.md; serving_models.py): a
    stand-in, since vLLM needs a GPU. LoRA cards carry root = path, parent = base model."""

    def __init__(self, base, loaded, refuse=None):
        import http.server
        import threading

        self.base, self.loaded, self.calls, self.refuse = base, dict(loaded), [], refuse or {}
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = (json.dumps(body) if not isinstance(body, str) else body).encode()
                self.send_response(status)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                cards = [{"id": api.base, "root": "/mnt/models", "parent": None}] + [
                    {"id": name, "root": path, "parent": api.base} for name, path in api.loaded.items()]
                self.reply(200, {"object": "list", "data": cards})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.calls.append((self.path, body))
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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.server.server_port


def switch(tmp_path, api, wanted):
    (tmp_path / "flavours.json").write_text(json.dumps(wanted))
    env = {"KITCHEN_URL": api.url, "KITCHEN_MODEL": api.base, "KITCHEN_FLAVOURS": str(tmp_path / "flavours.json"),
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(ROOT / "roles" / "kserve_lora" / "files" / "switch_flavours.py")],
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


from test_emulator import emulator, site_vars  # noqa: E402,F401 - the emulator fixture


def cluster_flavours(kubeconfig):
    import kubernetes

    client = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))
    data = client.read_namespaced_config_map("tiny-llama-flavours", "kitchen-platform").data
    return json.loads(data["state.json"]), json.loads(data["flavours.json"])


def test_switch_and_rollback_keep_their_state_in_the_cluster(fixture_dir, emulator, tmp_path):
    """Applied through kubernetes.core to the API emulator: the serving state lives in the
    flavours ConfigMap, so the rollback finds the version a switch left."""
    cluster = ("-e", site_vars(emulator["kubeconfig"]), "-e", "kserve_lora_work_dir=%s" % (tmp_path / "work"))
    # A dry run on a cluster without flavours gates, says what it would serve, creates nothing.
    run = run_playbook(SAMPLE, "phase3.yml", "--check", *fixture_args(fixture_dir, *cluster))
    assert run.rc == 0, run.output
    assert "; helpdesk (new) -> 1.1.0; summarise (new) -> 1.0.0 (gated" in " ".join(run.output.split())
    import kubernetes
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(emulator["kubeconfig"])))
    assert core.list_namespaced_config_map("kitchen-platform").items == []
    run = run_playbook(SAMPLE, "phase3.yml", *fixture_args(fixture_dir, *cluster))
    assert run.rc == 0, run.output
    assert "; helpdesk (new) -> 1.1.0; summarise (new) -> 1.0.0 (gated" in " ".join(run.output.split())
    state, served = cluster_flavours(emulator["kubeconfig"])
    assert state == {"helpdesk": {"version": "1.1.0", "previous": []}, "summarise": {"version": "1.0.0", "previous": []}}

    overlay = yaml.safe_load((fixture_dir / "overlay.yml").read_text())
    overlay["kitchen_adapters"][0]["serving_version"] = "1.0.0"
    (tmp_path / "switch.yml").write_text(yaml.safe_dump(overlay))
    switched = ("-e", "@%s" % (tmp_path / "switch.yml"))
    run = run_playbook(SAMPLE, "phase3.yml", *fixture_args(fixture_dir, *cluster, *switched))
    assert run.rc == 0, run.output
    assert "serving helpdesk 1.0.0, summarise 1.0.0; helpdesk 1.1.0 -> 1.0.0 (gated" in " ".join(run.output.split())
    state, served = cluster_flavours(emulator["kubeconfig"])
    assert state["helpdesk"] == {"version": "1.0.0", "previous": ["1.1.0"]}
    assert served["helpdesk"] == "/mnt/lora/helpdesk/1.0.0"

    run = run_playbook(SAMPLE, "rollback.yml", *fixture_args(fixture_dir, *cluster, *switched, "-e", "flavour=helpdesk"))
    assert run.rc == 0, run.output
    assert "; helpdesk 1.0.0 -> 1.1.0 (gated" in " ".join(run.output.split())
    state, served = cluster_flavours(emulator["kubeconfig"])
    assert state["helpdesk"] == {"version": "1.1.0", "previous": []}
    assert served["helpdesk"] == "/mnt/lora/helpdesk/1.1.0"

    run = run_playbook(SAMPLE, "rollback.yml", *fixture_args(fixture_dir, *cluster, "-e", "flavour=summarise"))
    assert run.rc != 0 and "summarise never served another version; nothing to return to" in run.output
    # Back at the inventory's versions: phase 3 again changes nothing.
    run = run_playbook(SAMPLE, "phase3.yml", *fixture_args(fixture_dir, *cluster))
    assert run.rc == 0, run.output
    assert "changed=0" in run.output, run.output

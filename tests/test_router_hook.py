"""The kitchen router: the real LiteLLM proxy image with the kitchen_router pre-call hook, in
front of a recording stand-in for llama-server (on this host, reached through the podman
network's gateway). What a client notices: the adapter each model name gets, that it cannot
choose another, that a flavour switch needs no proxy restart, and the refusals (404, 503)."""

import http.server
import json
import os
import secrets
import socket
import subprocess
import threading
import time

import pytest
import requests
import yaml

from conftest import BIN, ROOT, require_tools
from ansible_collections.privateai.kitchen.plugins.filter.images import image_references

ROLE = ROOT / "roles" / "podman" / "local_router"
BASE = "gemma-3-270m"
ADAPTERS = ["/lora/demo-alpha/1.0.0/adapter.gguf", "/lora/demo-alpha/1.1.0/adapter.gguf",
            "/lora/demo-beta/1.0.0/adapter.gguf"]
MODELS = {BASE: None, "demo-alpha": 0, "demo-alpha@1.0.0": 0, "demo-alpha@1.1.0": 1,
          "demo-beta": 2, "demo-beta@1.0.0": 2}
CHAT = {"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8}


def podman(*args, check=True):
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0 or not check, proc.stderr
    return proc


class Backend(http.server.ThreadingHTTPServer):
    """llama-server's API as far as the router uses it; every JSON body it gets is recorded."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("0.0.0.0", 0), Handler)  # the container reaches it at its network's gateway
        self.adapters, self.bodies, self.adapter_reads = list(ADAPTERS), [], 0

    def completions(self):
        return [body for _, body in self.bodies]


class Handler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # else every response waits ~40 ms for the client's ACK

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/lora-adapters":
            self.server.adapter_reads += 1
            self.reply(200, [{"id": i, "path": path, "scale": 0.0} for i, path in enumerate(self.server.adapters)])
        elif self.path == "/v1/models":
            self.reply(200, {"object": "list", "data": [{"id": BASE, "object": "model", "owned_by": "llamacpp"}]})
        else:
            self.reply(404, {"error": {"message": "no " + self.path}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append((self.path, body))
        # The answer names the adapter list the server was asked for: what a client can see.
        text = "lora=%s" % json.dumps(body.get("lora", "absent"))
        chat = self.path == "/v1/chat/completions"
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            return self.reply(404, {"error": {"message": "no " + self.path}})
        if "FAIL-500" in json.dumps(body):
            return self.reply(500, {"error": {"message": "the model server failed", "type": "server_error"}})
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        common = {"id": "cmpl-test", "created": int(time.time()), "model": body.get("model")}
        if not body.get("stream"):
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"} if chat
                      else {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None})
            return self.reply(200, {**common, "object": "chat.completion" if chat else "text_completion",
                                    "choices": [choice], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for i, piece in enumerate([text[:5], text[5:], ""]):
            last = i == 2
            if chat:
                delta = {} if last else {"content": piece, **({"role": "assistant"} if i == 0 else {})}
                choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
            else:
                choice = {"index": 0, "text": piece, "finish_reason": "stop" if last else None, "logprobs": None}
            chunk = {**common, "object": "chat.completion.chunk" if chat else "text_completion",
                     "choices": [choice], **({"usage": usage} if last else {})}
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def backend():
    server = Backend()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_config(folder, models, backend_url):
    """config.yaml from the role's template, rendered by Ansible itself."""
    variables = folder.parent / "router-vars.json"
    variables.write_text(json.dumps({"local_router_models": models, "local_router_backend": backend_url,
                                     "local_router_base_model": BASE, "local_router_request_timeout": 300,
                                     "ansible_python_interpreter": str(BIN / "python")}))
    proc = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "ansible.builtin.template",
         "-a", "src=%s dest=%s mode=0644" % (ROLE / "templates" / "config.yaml.j2", folder / "config.yaml"),
         "-e", "@%s" % variables],
        cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")), capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


class Router:
    def __init__(self, folder, url, container, backend_url):
        self.folder, self.url, self.container, self.backend_url = folder, url, container, backend_url

    def write_routes(self, models=None, adapters=None, text=None):
        """routes.json replaced the way Ansible replaces a file: written beside it, renamed."""
        if text is None:
            text = json.dumps({"backend": self.backend_url, "base": BASE, "adapters": adapters or ADAPTERS,
                               "models": models or MODELS})
        staged = self.folder / ".routes.json.new"
        staged.write_text(text)
        staged.chmod(0o644)
        os.replace(staged, self.folder / "routes.json")

    def post(self, path, body, **kwargs):
        return requests.post(self.url + path, json=body, timeout=60, **kwargs)

    def process(self):
        return podman("inspect", "-f", "{{.State.Pid}} {{.State.StartedAt}}", self.container).stdout.strip()


@pytest.fixture(scope="module")
def router(tmp_path_factory, backend):
    require_tools("podman")
    # The image as it ships: the tag image_build gives this Containerfile, lock and base (the
    # host lane's bundle built it before this module runs), built here only if missing.
    base = podman("image", "inspect", "--format", "{{.Id}}", "localhost/kitchen/debian-base:bookworm").stdout.strip()
    image = image_references([{"item": "litellm", "stat": {"path": str(ROOT / "images" / "litellm" / "Containerfile")}}],
                             base, "localhost/kitchen")["litellm"]
    if podman("image", "exists", image, check=False).returncode != 0:
        podman("build", "--format", "oci", "--volume",
               "%s:/wheels" % (os.path.expanduser("~/.cache/private-ai-kitchen/wheels")),
               "--volume", "/etc/ssl/certs/ca-certificates.crt:/run/kitchen/build-ca.crt:ro",
               "--build-arg", "BASE=localhost/kitchen/debian-base:bookworm",
               "-t", image, str(ROOT / "images" / "litellm"))
    name = "kitchen-test-router-" + secrets.token_hex(4)
    podman("network", "create", name)
    try:
        gateway = podman("network", "inspect", "-f", "{{range .Subnets}}{{.Gateway}}{{end}}", name).stdout.strip()
        folder = tmp_path_factory.mktemp("router") / "etc-kitchen-router"
        folder.mkdir()
        folder.chmod(0o755)  # read by the image's own user
        backend_url = "http://%s:%d" % (gateway, backend.server_port)
        render_config(folder, list(MODELS), backend_url)
        (folder / "kitchen_router.py").write_text((ROLE / "files" / "kitchen_router.py").read_text())
        (folder / "kitchen_router.py").chmod(0o644)
        port = free_port()
        router = Router(folder, "http://127.0.0.1:%d" % port, name, backend_url)
        router.write_routes()
        podman("run", "-d", "--name", name, "--network", name, "--publish", "127.0.0.1:%d:4000" % port,
               "--volume", "%s:/etc/kitchen/router:ro" % folder, image,
               "--config", "/etc/kitchen/router/config.yaml", "--port", "4000", "--host", "0.0.0.0")
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(router.url + "/health/readiness", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            state = podman("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            assert state == "true" and time.monotonic() < deadline, podman("logs", name, check=False).stderr[-4000:]
            time.sleep(1)
        yield router
        (folder.parent / "proxy.log").write_text(podman("logs", name, check=False).stderr)
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("network", "rm", "-f", name, check=False)


@pytest.fixture(autouse=True)
def fresh(router, backend):
    """Every test starts from the standard routes and adapter list, with nothing recorded."""
    router.write_routes()
    backend.adapters[:] = ADAPTERS
    backend.bodies.clear()
    yield
    backend.bodies.clear()


def answer(response):
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_served_name_gets_its_adapter(router, backend, model):
    expected = [] if MODELS[model] is None else [{"id": MODELS[model], "scale": 1.0}]
    assert answer(router.post("/v1/chat/completions", {"model": model, **CHAT})) == "lora=" + json.dumps(expected)
    (body,) = backend.completions()
    assert body["lora"] == expected
    assert body["model"] == BASE  # one base model behind every name


def test_text_completions_get_the_adapter_too(router, backend):
    response = router.post("/v1/completions", {"model": "demo-beta", "prompt": "Hello", "max_tokens": 4})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"] == 'lora=[{"id": 2, "scale": 1.0}]'


SMUGGLED = [{"id": 2, "scale": 1.0}]


@pytest.mark.parametrize("extra", [
    {"lora": SMUGGLED},
    {"extra_body": {"lora": SMUGGLED}},
    {"extra_body": {"extra_body": {"lora": SMUGGLED}}},
    {"extra_body": {"lora": SMUGGLED}, "lora": SMUGGLED},
    {"allowed_openai_params": ["lora"], "lora": SMUGGLED},
    {"litellm_embedding_config": {"lora": SMUGGLED}},
    {"litellm_params": {"extra_body": {"lora": SMUGGLED}}},
    {"metadata": {"lora": SMUGGLED, "extra_body": {"lora": SMUGGLED}}},
    {"litellm_metadata": {"lora": SMUGGLED}},
    {"additional_drop_params": ["lora"]},
    {"additional_drop_params": ["extra_body"]},
    {"drop_params": True, "lora": SMUGGLED},
], ids=lambda extra: "+".join(sorted(extra)) + ":" + json.dumps(extra)[:40])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_client_cannot_choose_the_adapter(router, backend, extra, stream):
    response = router.post("/v1/chat/completions", {"model": "demo-alpha", **CHAT, **extra, "stream": stream})
    assert response.status_code == 200, response.text
    (body,) = backend.completions()
    assert body["lora"] == [{"id": 0, "scale": 1.0}], body
    assert "extra_body" not in body and "lora" not in json.dumps(body.get("metadata", {}))


def test_a_flavour_switch_needs_no_restart(router, backend):
    process = router.process()
    assert answer(router.post("/v1/chat/completions", {"model": "demo-alpha", **CHAT})) == \
        'lora=[{"id": 0, "scale": 1.0}]'
    router.write_routes(models={**MODELS, "demo-alpha": 1})
    assert answer(router.post("/v1/chat/completions", {"model": "demo-alpha", **CHAT})) == \
        'lora=[{"id": 1, "scale": 1.0}]'
    assert [body["lora"] for body in backend.completions()] == [[{"id": 0, "scale": 1.0}], [{"id": 1, "scale": 1.0}]]
    assert router.process() == process  # the same proxy process (PID, start time)


def test_an_unknown_model_is_refused_with_the_served_names(router, backend):
    response = router.post("/v1/chat/completions", {"model": "demo-gamma", **CHAT})
    assert response.status_code == 404, response.text
    message = response.json()["error"]["message"]
    assert "'demo-gamma' is not served here" in message
    assert "demo-alpha@1.1.0" in message and BASE in message
    assert backend.completions() == []


def test_a_new_adapter_list_is_served_only_once_the_model_server_has_it(router, backend):
    new = ADAPTERS + ["/lora/demo-gamma/1.0.0/adapter.gguf"]
    router.write_routes(models={**MODELS, "demo-alpha": 3}, adapters=new)  # the server still has the old list
    reads, started = backend.adapter_reads, time.monotonic()
    refusals = [router.post("/v1/chat/completions", {"model": "demo-alpha", **CHAT}) for _ in range(10)]
    elapsed = time.monotonic() - started
    for response in refusals:
        assert response.status_code == 503, response.text
        assert "the model server is loading a new adapter list; retry" in response.json()["error"]["message"]
        assert response.headers.get("retry-after") == "1"
    assert backend.completions() == []
    assert backend.adapter_reads - reads <= int(elapsed) + 1  # re-checked at most once a second
    backend.adapters[:] = new  # the model server is up with the new list
    deadline = time.monotonic() + 10
    while (response := router.post("/v1/chat/completions", {"model": "demo-alpha", **CHAT})).status_code == 503:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)
    assert answer(response) == 'lora=[{"id": 3, "scale": 1.0}]'


def test_an_unreachable_model_server_is_a_503_until_it_answers(router, backend):
    router.write_routes(text=json.dumps({"backend": "http://127.0.0.1:9", "base": BASE, "adapters": ADAPTERS,
                                         "models": MODELS}))
    response = router.post("/v1/chat/completions", {"model": "demo-alpha", **CHAT})
    assert response.status_code == 503, response.text
    assert "loading a new adapter list; retry (URLError" in response.json()["error"]["message"]


@pytest.mark.parametrize("text, error", [
    ('{"backend": "http://x", "base": "gemma', "JSONDecodeError"),
    (json.dumps({"backend": "http://x", "base": BASE, "adapters": ADAPTERS, "models": {"demo-alpha": 3}}),
     "adapter ids outside 0..2: {'demo-alpha': 3}"),
    (json.dumps({"base": BASE, "adapters": ADAPTERS, "models": MODELS}), "needs backend"),
])
def test_an_unusable_routes_file_is_a_503_naming_it(router, backend, text, error):
    router.write_routes(text=text)
    response = router.post("/v1/chat/completions", {"model": "demo-alpha", **CHAT})
    assert response.status_code == 503, response.text
    message = response.json()["error"]["message"]
    assert "/etc/kitchen/router/routes.json is unusable" in message and error in message
    assert backend.completions() == []
    router.write_routes()  # repaired: served again, by the same process
    assert answer(router.post("/v1/chat/completions", {"model": "demo-alpha", **CHAT})) == \
        'lora=[{"id": 0, "scale": 1.0}]'


SAMPLING = {"temperature": 0.3, "top_p": 0.9, "seed": 42, "stop": ["\n\n"], "top_k": 20, "min_p": 0.05,
            "repeat_penalty": 1.1, "repeat_last_n": 64, "typical_p": 0.95, "mirostat": 2, "mirostat_tau": 5.0,
            "cache_prompt": True, "n_probs": 2, "id_slot": 1}


@pytest.mark.parametrize("path, request_body", [
    ("/v1/chat/completions", {"model": "demo-alpha", **CHAT}),
    ("/v1/completions", {"model": "demo-alpha", "prompt": "Hello", "max_tokens": 8}),
])
def test_sampling_parameters_reach_the_model_server_unchanged(router, backend, path, request_body):
    response = router.post(path, {**request_body, **SAMPLING})
    assert response.status_code == 200, response.text
    (body,) = backend.completions()
    assert {key: body.get(key) for key in SAMPLING} == SAMPLING
    assert body["max_tokens"] == 8


@pytest.mark.parametrize("path, request_body", [
    ("/v1/chat/completions", {"model": "demo-alpha@1.1.0", **CHAT}),
    ("/v1/completions", {"model": "demo-alpha@1.1.0", "prompt": "Hello", "max_tokens": 8}),
])
def test_streaming_passes_through(router, backend, path, request_body):
    response = router.post(path, {**request_body, "stream": True}, stream=True)
    assert response.status_code == 200, response.text
    pieces = []
    for line in response.iter_lines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            choice = json.loads(line[6:])["choices"]
            if choice:
                pieces.append(choice[0].get("text") or choice[0].get("delta", {}).get("content") or "")
    assert "".join(pieces) == 'lora=[{"id": 1, "scale": 1.0}]'
    (body,) = backend.completions()
    assert body["stream"] is True and body["lora"] == [{"id": 1, "scale": 1.0}]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("extra", [{}, {"num_retries": 3}, {"max_retries": 3}, {"fallbacks": ["demo-beta"]}],
                         ids=json.dumps)
def test_a_failed_generation_reaches_the_model_server_once(router, backend, stream, extra):
    request = {"model": "demo-alpha", "messages": [{"role": "user", "content": "FAIL-500"}], "stream": stream}
    response = router.post("/v1/chat/completions", {**request, **extra})
    assert response.status_code == 500 and "the model server failed" in response.text, response.text
    assert len(backend.completions()) == 1  # no retry, no fallback: counted once


def test_the_served_names_are_listed(router):
    response = requests.get(router.url + "/v1/models", timeout=30)
    assert response.status_code == 200, response.text
    assert sorted(model["id"] for model in response.json()["data"]) == sorted(MODELS)


def test_the_rendered_config_has_no_retries_and_keeps_unknown_parameters(router):
    config = yaml.safe_load((router.folder / "config.yaml").read_text())
    assert [entry["model_name"] for entry in config["model_list"]] == list(MODELS)
    assert {json.dumps(entry["litellm_params"], sort_keys=True) for entry in config["model_list"]} == {json.dumps(
        {"model": "openai/" + BASE, "api_base": router.backend_url + "/v1", "api_key": "none", "max_retries": 0,
         "timeout": 300, "stream_timeout": 300}, sort_keys=True)}
    assert config["litellm_settings"]["drop_params"] is False
    assert config["router_settings"]["num_retries"] == 0 and "fallbacks" not in config["router_settings"]

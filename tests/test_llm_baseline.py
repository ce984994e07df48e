"""The baseline measurement (privateai.kitchen.llm_baseline). The real llama.cpp server is
measured in test_local_kitchen; here a small streaming server controls what a real one
cannot be made to do on demand: report usage at the end of the stream as vLLM does, fail
with HTTP 500, and count the requests in flight."""

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BIN, ROOT
from ansible_collections.privateai.kitchen.plugins.module_utils import llm_baseline


class StreamingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, chunks=5, usage=None, status=200, first_delay=0.05):
        super().__init__(("127.0.0.1", 0), Handler)
        self.chunks, self.usage, self.status, self.first_delay = chunks, usage, status, first_delay
        self.prompts, self.in_flight, self.most_in_flight = [], 0, 0
        self.lock = threading.Lock()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.prompts.append(body["messages"][0]["content"])
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        if server.status != 200:
            self._leave()
            self.send_response(server.status)
            self.end_headers()
            self.wfile.write(b'{"error": "model not loaded"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        time.sleep(server.first_delay)
        events = [{"choices": [{"delta": {"role": "assistant"}}]}]
        events += [{"choices": [{"delta": {"content": "tok%d " % i}}]} for i in range(server.chunks)]
        if server.usage is not None:
            events.append({"choices": [], "usage": {"completion_tokens": server.usage}})
        for event in events:
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            self.wfile.flush()
            time.sleep(0.005)
        self._leave()
        self.wfile.write(b"data: [DONE]\n\n")

    def _leave(self):
        """Out of flight before the client can know the answer is over: a client starting its
        next request on [DONE] never meets a count this handler has yet to lower."""
        with self.server.lock:
            self.server.in_flight -= 1


@pytest.fixture
def server(request):
    instance = StreamingServer(**getattr(request, "param", {}))
    thread = threading.Thread(target=instance.serve_forever, daemon=True)
    thread.start()
    yield instance
    instance.shutdown()


def test_percentile_interpolates_between_ranks():
    assert llm_baseline.percentile([4, 1, 3, 2], 0.5) == 2.5
    assert llm_baseline.percentile([1, 2, 3, 4, 5], 0.95) == pytest.approx(4.8)
    assert llm_baseline.percentile([7], 0.95) == 7


def test_levels_run_concurrently_with_distinct_prompts_and_count_streamed_tokens(server):
    levels = llm_baseline.measure(server.url, "m", "Soup?", 16, [1, 4], 2, 30)
    assert [(l["concurrency"], l["requests"]) for l in levels] == [(1, 2), (4, 8)]
    assert server.most_in_flight == 4
    measured = server.prompts[1:]  # after the warm-up
    assert len(set(measured)) == len(measured) == 10, "no request may hit the server's prompt cache"
    assert all(l["output_tokens"] == l["requests"] * 5 for l in levels)  # five text chunks each
    assert all(l["ttft_seconds"]["p50"] >= 0.05 for l in levels)  # the server waits before the first token
    assert levels[1]["throughput_vs_first_level"] > 0


@pytest.mark.parametrize("server", [{"chunks": 3, "usage": 11}], indirect=True)
def test_usage_at_the_end_of_the_stream_wins_over_counted_chunks(server):
    result = llm_baseline.stream_chat(server.url, "m", "Soup?", 16, 30)
    assert result["tokens"] == 11


@pytest.mark.parametrize("server", [{"status": 500}], indirect=True)
def test_a_failing_server_is_named_with_its_status(server):
    with pytest.raises(llm_baseline.BaselineError, match=r"/v1/chat/completions answered HTTP 500: .*model not loaded"):
        llm_baseline.stream_chat(server.url, "m", "Soup?", 16, 30)


def run_module(args):
    environment = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                       ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-m", "privateai.kitchen.llm_baseline",
                           "-a", json.dumps(args)], cwd=ROOT, env=environment, capture_output=True, text=True)
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


def test_the_module_measures_once_per_identity_and_keeps_the_baseline_when_a_measurement_fails(server, tmp_path):
    dest = tmp_path / "baseline" / "m.json"
    args = {"url": server.url, "model": "m", "dest": str(dest), "identity": {"image": "a@sha256:1"},
            "concurrency": [1, 2], "rounds": 1, "max_tokens": 8}
    first = run_module(args)
    assert first["changed"] and not first.get("failed"), first
    stored = dest.read_text()
    assert "concurrency" in (tmp_path / "baseline" / "m.txt").read_text()
    requests = len(server.prompts)
    again = run_module(args)
    assert not again["changed"] and len(server.prompts) == requests, "a matching baseline is not measured again"
    assert again["baseline"] == json.loads(stored)

    server.status = 500
    failed = run_module(dict(args, identity={"image": "b@sha256:2"}))
    assert failed.get("failed") and "the stored one is kept" in failed["msg"] and "HTTP 500" in failed["msg"]
    assert dest.read_text() == stored

    server.status = 200
    remeasured = run_module(dict(args, identity={"image": "b@sha256:2"}))
    assert remeasured["changed"] and json.loads(dest.read_text())["identity"] == {"image": "b@sha256:2"}

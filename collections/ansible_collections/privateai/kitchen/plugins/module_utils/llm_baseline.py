# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Baseline figures of an OpenAI-compatible model server: time to first token and output
tokens per second, at several concurrency levels.

Standard library only, so that the same code can run on a host (the llm_baseline module) or
in a pod next to the server. Every request streams a chat completion at temperature 0: the
first chunk that carries text marks the first token; output tokens are the usage the server
reports at the end of the stream, or else the number of text chunks (llama.cpp and vLLM send
one token per chunk).
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import urllib.error
import urllib.request

FORMAT_VERSION = 1


class BaselineError(Exception):
    """The server could not be measured; the message names the URL and what went wrong."""


def stream_chat(url, model, prompt, max_tokens, timeout):
    """One streamed chat completion: seconds to the first text, total seconds, output tokens."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    request = urllib.request.Request(url.rstrip("/") + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    started = time.monotonic()
    first = None
    chunks = 0
    usage_tokens = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for raw in response:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if event.get("usage") and event["usage"].get("completion_tokens") is not None:
                    usage_tokens = event["usage"]["completion_tokens"]
                for choice in event.get("choices") or []:
                    if (choice.get("delta") or {}).get("content") is not None:
                        chunks += 1
                        if first is None:
                            first = time.monotonic() - started
    except urllib.error.HTTPError as exc:
        raise BaselineError("%s answered HTTP %s: %s" % (request.full_url, exc.code, exc.read()[:300].decode("utf-8", "replace")))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BaselineError("%s: %s: %s" % (request.full_url, type(exc).__name__, exc))
    total = time.monotonic() - started
    if first is None:
        raise BaselineError("%s streamed no text for model %r" % (request.full_url, model))
    return {"ttft": first, "seconds": total, "tokens": usage_tokens if usage_tokens is not None else chunks}


def percentile(values, share):
    """Linear interpolation between closest ranks (the same as numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure_level(url, model, prompt, max_tokens, concurrency, rounds, timeout):
    """rounds x concurrency requests, concurrency of them in flight at any time. model: a
    name, or a list of names taken in turn (a load spread over flavours)."""
    models = [model] if isinstance(model, str) else list(model)
    results, errors = [], []
    lock = threading.Lock()
    total = concurrency * rounds

    numbers = iter(range(total))

    def worker(count):
        for _ in range(count):
            with lock:
                number = next(numbers)
            try:
                # A different first line per request: the server's prompt cache cannot answer it.
                result = stream_chat(url, models[number % len(models)],
                                     "Request %d of %d.\n%s" % (number + 1, total, prompt), max_tokens, timeout)
            except BaselineError as exc:
                with lock:
                    errors.append(str(exc))
                return
            with lock:
                results.append(result)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(rounds,)) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    if errors:
        raise BaselineError("%d of %d requests at concurrency %d failed, the first: %s"
                            % (total - len(results), total, concurrency, errors[0]))
    ttfts = [r["ttft"] for r in results]
    # Decode rate of one request: tokens after the first over the time after the first.
    rates = [(r["tokens"] - 1) / (r["seconds"] - r["ttft"]) for r in results
             if r["tokens"] > 1 and r["seconds"] > r["ttft"]]
    tokens = sum(r["tokens"] for r in results)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "output_tokens": tokens,
        "wall_seconds": round(wall, 3),
        "ttft_seconds": {"p50": round(percentile(ttfts, 0.5), 4), "p95": round(percentile(ttfts, 0.95), 4),
                         "max": round(max(ttfts), 4)},
        "tokens_per_second_per_request": {"p50": round(percentile(rates, 0.5), 2) if rates else None},
        "output_tokens_per_second": round(tokens / wall, 2) if wall else None,
    }


def measure(url, model, prompt, max_tokens, levels, rounds, timeout):
    """A warm-up request (not counted), then each concurrency level in turn."""
    stream_chat(url, model, prompt, max_tokens, timeout)
    measured = [measure_level(url, model, prompt, max_tokens, level, rounds, timeout) for level in levels]
    first = measured[0]["output_tokens_per_second"]
    for level in measured[1:]:
        # Scaling: aggregate output rate against the first level, measured in the same run.
        level["throughput_vs_first_level"] = round(level["output_tokens_per_second"] / first, 2) if first else None
    return measured


def baseline_document(model, url, identity, settings, levels):
    return {"format": FORMAT_VERSION, "model": model, "url": url,
            "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "identity": identity, "settings": settings, "levels": levels}


def summary_text(document):
    """A short table a person reads after phase 2 (and finds again beside the JSON)."""
    settings = document["settings"]
    lines = ["Baseline of %s, measured %s: streamed chat completions of up to %d tokens at temperature 0, "
             "%d round(s) per level." % (document["model"], document["measured_at"], settings["max_tokens"],
                                         settings["rounds"]),
             "%11s %8s %10s %10s %12s %14s" % ("concurrency", "requests", "TTFT p50", "TTFT p95",
                                               "tok/s p50 *", "output tok/s"),
             ]
    for level in document["levels"]:
        per_request = level["tokens_per_second_per_request"]["p50"]
        scaling = level.get("throughput_vs_first_level")
        lines.append("%11d %8d %9.3fs %9.3fs %12s %14s" % (
            level["concurrency"], level["requests"], level["ttft_seconds"]["p50"], level["ttft_seconds"]["p95"],
            "-" if per_request is None else "%.1f" % per_request,
            "%.1f%s" % (level["output_tokens_per_second"],
                        "" if scaling is None else " (%.2fx)" % scaling)))
    lines.append("* one request's decode rate; output tok/s is all requests together, (x) against concurrency %d."
                 % document["levels"][0]["concurrency"])
    return "\n".join(lines) + "\n"

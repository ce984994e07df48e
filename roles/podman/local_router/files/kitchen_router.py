"""The kitchen router's pre-call hook: served model name -> llama-server LoRA adapter.

LiteLLM proxy config: `litellm_settings.callbacks: [kitchen_router.router]`. llama-server keeps
one base model with every adapter loaded (`--lora` in the order of routes.json's `adapters`,
`--lora-init-without-apply`) and applies per request the `lora` list of the JSON body; this hook
sets that list from routes.json (written by Ansible, path in KITCHEN_ROUTES):
  {"backend": URL, "base": NAME, "adapters": [path of id 0, ...], "models": {NAME: id or null}}
The file is re-read when it changes (a flavour switch needs no proxy restart). After each
change the model server's own list (GET /lora-adapters) must match `adapters` before anything
is served: while it loads a new list, an id could name another flavour.
"""

import asyncio
import json
import os
import time
import urllib.request

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

ROUTES = os.environ.get("KITCHEN_ROUTES", "/etc/kitchen/router/routes.json")
RECHECK_S = 1.0  # at most one /lora-adapters request a second while the lists differ
# What a client could choose the adapter with, or take the adapter (or the base) away with:
# LiteLLM moves unknown top-level keys (`lora`) into extra_body, lets the client's extra_body win
# over ours, spreads litellm_embedding_config into the call, drops keys named in
# additional_drop_params, sends allowed_openai_params as they are; client-side retries and
# fallbacks would call the backend again (double counting) or under another name.
CLIENT_KEYS = ("lora", "extra_body", "litellm_embedding_config", "additional_drop_params", "drop_params",
               "allowed_openai_params", "num_retries", "max_retries", "fallbacks", "context_window_fallbacks",
               "content_policy_fallbacks")


def load_routes(path: str) -> tuple:
    """(stat key, routes) of a complete, valid routes file; ValueError/OSError otherwise."""
    with open(path, "rb") as handle:
        before = os.fstat(handle.fileno())
        text = handle.read()
        after = os.fstat(handle.fileno())
    key = (before.st_mtime_ns, before.st_size, before.st_ino)
    if key != (after.st_mtime_ns, after.st_size, after.st_ino) or len(text) != before.st_size:
        raise ValueError("changed while being read")  # written in place, not renamed: read it again
    routes = json.loads(text)
    adapters, models = routes.get("adapters"), routes.get("models")
    if not (isinstance(routes.get("backend"), str) and isinstance(routes.get("base"), str)
            and isinstance(adapters, list) and all(isinstance(a, str) for a in adapters)
            and isinstance(models, dict) and models):
        raise ValueError("needs backend, base (strings), adapters (list of paths), models (object)")
    bad = {name: i for name, i in models.items()
           if i is not None and (type(i) is not int or not 0 <= i < len(adapters))}
    if bad:
        raise ValueError("adapter ids outside 0..%d: %s" % (len(adapters) - 1, bad))
    return key, routes


def server_adapters(backend: str) -> list:
    """llama-server's loaded adapters as [path of id 0, ...] (GET /lora-adapters)."""
    with urllib.request.urlopen(backend.rstrip("/") + "/lora-adapters", timeout=3) as response:
        listed = json.loads(response.read())
    return [entry["path"] for entry in sorted(listed, key=lambda entry: entry["id"])]


class KitchenRouter(CustomLogger):
    def __init__(self, path: str = ROUTES):
        super().__init__()
        self.path, self.key, self.routes, self.error = path, None, None, None
        self.verified, self.checked_at = False, 0.0
        self.lock = asyncio.Lock()

    async def refresh(self) -> dict:
        """The current routes, verified against the model server; HTTPException 503 otherwise."""
        async with self.lock:  # one reload and one /lora-adapters request, however many callers
            try:
                stat = os.stat(self.path)
                if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self.key:
                    self.key, self.routes = load_routes(self.path)
                    self.verified, self.checked_at, self.error = False, 0.0, None
            except (OSError, ValueError) as error:  # never serve with a stale or half-read mapping
                self.key, self.routes, self.error = None, None, "%s: %s" % (type(error).__name__, error)
            if self.routes is None:
                raise HTTPException(503, "the router's routes file %s is unusable (%s)" % (self.path, self.error))
            if not self.verified and time.monotonic() - self.checked_at >= RECHECK_S:
                self.checked_at = time.monotonic()
                try:
                    listed = await asyncio.to_thread(server_adapters, self.routes["backend"])
                    self.verified, self.error = listed == self.routes["adapters"], None
                except (OSError, ValueError, KeyError, TypeError) as error:
                    self.error = "%s: %s" % (type(error).__name__, error)
            if not self.verified:
                detail = " (%s)" % self.error if self.error else ""
                raise HTTPException(503, "the model server is loading a new adapter list; retry" + detail,
                                    headers={"Retry-After": "1"})
            return self.routes

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        if "model" not in data:  # no model, nothing this router serves
            return data
        routes = await self.refresh()
        models, name = routes["models"], data["model"]
        if not isinstance(name, str) or name not in models:
            raise HTTPException(404, "model %r is not served here; served models: %s"
                                % (name, ", ".join(sorted(models))))
        for key in CLIENT_KEYS:
            data.pop(key, None)
        adapter = models[name]
        # An empty list switches every adapter off: the base model, whatever the server's global scales.
        data["extra_body"] = {"lora": [] if adapter is None else [{"id": adapter, "scale": 1.0}]}
        return data


router = KitchenRouter()

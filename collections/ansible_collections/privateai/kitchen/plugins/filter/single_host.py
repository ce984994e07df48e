# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters of the single-host kitchen's roles."""

from ansible.errors import AnsibleFilterError


def htpasswd(username, password, current=""):
    """The htpasswd file of one user with a bcrypt hash (the only kind docker-registry reads).
    The current file is returned unchanged while its entry for `username` still verifies the
    password, so a rerun changes nothing (bcrypt salts differ every time)."""
    import bcrypt

    if not username or ":" in username:
        raise AnsibleFilterError("htpasswd: the user name %r is empty or holds ':'" % (username,))
    if not password:
        raise AnsibleFilterError("htpasswd: the password of %s is empty" % username)
    for line in (current or "").splitlines():
        name, _, hashed = line.partition(":")
        if name == username and hashed.startswith("$2"):
            try:
                if bcrypt.checkpw(password.encode(), hashed.encode()) and current.strip() == line.strip():
                    return current if current.endswith("\n") else current + "\n"
            except ValueError:
                pass
    return "%s:%s\n" % (username, bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode())


# llama.cpp's built-in chat templates (src/llama-chat.cpp of the pinned llama.cpp): a name
# outside them stops llama-server at start, so it is refused here with the list.
CHAT_TEMPLATES = frozenset(
    "chatml llama2 llama2-sys llama2-sys-bos llama2-sys-strip mistral-v1 mistral-v3 mistral-v3-tekken "
    "mistral-v7 mistral-v7-tekken phi3 phi4 falcon3 zephyr monarch gemma orion openchat vicuna vicuna-orca "
    "deepseek deepseek2 deepseek3 command-r llama3 chatglm3 chatglm4 glmedge minicpm exaone3 exaone4 "
    "rwkv-world granite gigachat megrez yandex bailing llama4 smolvlm hunyuan-moe gpt-oss hunyuan-dense "
    "kimi-k2".split())


def llama_adapters(lora_state=None, mount="/lora"):
    """Every prepared version's adapter inside the container, in llama-server's id order: the
    position of its --lora flag. Sorted by flavour and version, so the list (and a running
    server) changes only when a version is added or dropped, never on a switch."""
    ready = (lora_state or {}).get("ready", {})
    return ["%s/%s" % (mount, prepared["path"])
            for _flavour, versions in sorted(ready.items()) for _version, prepared in sorted(versions.items())]


def llama_server_args(settings, lora_state=None, mount="/lora"):
    """llama-server's command line: the resident base model, every prepared adapter loaded at
    start and applied only per request, `slots` parallel sequences of `context` tokens each.
    settings: model (path in the container), alias, context, slots, threads, chat_template."""
    template = settings.get("chat_template")
    if template and template not in CHAT_TEMPLATES:
        raise AnsibleFilterError("kitchen_models[0].serving.chat_format: %r is not a chat template llama.cpp knows "
                                 "(one of %s)" % (template, ", ".join(sorted(CHAT_TEMPLATES))))
    slots, context = int(settings["slots"]), int(settings["context"])
    args = ["--model", settings["model"], "--alias", settings["alias"], "--host", "0.0.0.0", "--port", "8080",
            # The context is shared by the slots: each gets the model's max_model_len.
            "--ctx-size", str(slots * context), "--parallel", str(slots),
            "--threads", str(settings["threads"]), "--metrics", "--offline", "--no-webui"]
    if template:
        args += ["--chat-template", template]
    adapters = llama_adapters(lora_state, mount)
    for path in adapters:
        # Scale 0, not --lora: a request without a "lora" field gets the server's scales, which
        # would otherwise apply every adapter at once.
        args += ["--lora-scaled", path, "0"]
    if adapters:
        args.append("--lora-init-without-apply")
    return args


def llama_names(lora_state, base):
    """The names the router accepts: the base, every flavour with a prepared version (whether
    or not one serves yet) and every version as "<flavour>@<version>". They change only with
    the prepared set, when the model server restarts anyway; what each name maps to is
    llama_routes'."""
    ready = (lora_state or {}).get("ready", {})
    return [base] + sorted(ready) + ["%s@%s" % (f, v) for f, versions in sorted(ready.items()) for v in sorted(versions)]


def llama_routes(lora_state, base, backend, mount="/lora"):
    """The router's mapping (routes.json): each served name to an adapter id (None: the base).
    The base by its name, each flavour in service by its own name, every prepared version as
    "<flavour>@<version>". A switch or rollback changes only `models`."""
    state = lora_state or {}
    ready, serving = state.get("ready", {}), state.get("serving", {})
    adapters = llama_adapters(state, mount)
    ids = {path: index for index, path in enumerate(adapters)}
    models = {base: None}
    for flavour, entry in sorted(serving.items()):
        prepared = ready.get(flavour, {}).get(entry.get("version"))
        if prepared is None:
            raise AnsibleFilterError("flavour %s serves version %s, which is not prepared: run phase 3 again"
                                     % (flavour, entry.get("version")))
        models[flavour] = ids["%s/%s" % (mount, prepared["path"])]
    for flavour, versions in sorted(ready.items()):
        for version, prepared in sorted(versions.items()):
            models["%s@%s" % (flavour, version)] = ids["%s/%s" % (mount, prepared["path"])]
    if len(models) != 1 + len(serving) + len(adapters):
        raise AnsibleFilterError("a flavour is named like the base model %s or like another flavour's version" % base)
    return {"backend": backend, "base": base, "adapters": adapters, "models": models}


def lora_report(decision, proofs, declared, gated, base):
    """Lines that tell what phase 3 did: what serves, each flavour's evaluation, switches,
    the per-request proof, and where the inventory and the service disagree (after a rollback)."""
    evaluations = {(e["flavour"], e["version"]): e for e in decision.get("evaluations", [])}
    serving = decision.get("serving", {})
    lines = ["%d flavour version(s) gated and prepared; %s serves as itself and %s"
             % (gated, base, ("the flavours " + ", ".join(sorted(serving))) if serving else "no flavour")]
    for flavour, version in sorted(serving.items()):
        found = evaluations.get((flavour, version))
        score = ("eval %d/%d passed, p50 %.2f s" % (found["passed"], found["total"], found["latency_p50_seconds"])
                 if found else "no evaluation set")
        previous = decision.get("previous", {}).get(flavour) or []
        lines.append("%s: %s in service (%s); rollback returns to %s"
                     % (flavour, version, score, previous[-1] if previous else "nothing (no earlier version served)"))
    for switch in decision.get("switches", []):
        forced = (" (forced: pass rate %.0f%% against %.0f%%)" % (100 * switch["pass_rate_to"], 100 * switch["pass_rate_from"])
                  if switch.get("forced") else "")
        lines.append("switched %s: %s -> %s%s" % (switch["flavour"], switch["from"] or "(new)", switch["to"], forced))
    for flavour in decision.get("retired", []):
        lines.append("retired %s: no longer declared" % flavour)
    for flavour, version in sorted(serving.items()):
        if declared.get(flavour) and declared[flavour] != version:
            lines.append("%s serves %s but the inventory says serving_version %s: set it to %s, or the next phase 3 "
                         "run switches to %s again" % (flavour, version, declared[flavour], version, declared[flavour]))
    for proof in proofs or []:
        lines.append("%s at temperature 0: the same text twice %s, unlike %s %s"
                     % (proof["flavour"], "yes" if proof["repeatable"] else "NO",
                        base, "yes" if proof["differs_from_base"] else "NO (the adapter changes nothing here)"))
    lines.append("one base model resident with every prepared version loaded beside it: a switch or rollback "
                 "changes the router's mapping only; a new version restarts the model server once.")
    return lines


class FilterModule:
    def filters(self):
        return {"htpasswd": htpasswd, "llama_adapters": llama_adapters, "llama_server_args": llama_server_args,
                "llama_names": llama_names, "llama_routes": llama_routes, "lora_report": lora_report}

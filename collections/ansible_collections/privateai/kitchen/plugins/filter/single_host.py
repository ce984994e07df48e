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


def llama_models(base, lora_state=None, mount="/lora"):
    """The llama.cpp server's model list: the base model, each flavour in service under its own
    name, and every prepared version as "<flavour>@<version>" (evaluated before a switch).
    lora_state: the state file of privateai.kitchen.lora_prepare (None before phase 3)."""
    state = lora_state or {}
    ready, serving = state.get("ready", {}), state.get("serving", {})
    models = [dict(base)]
    for flavour, entry in sorted(serving.items()):
        prepared = ready.get(flavour, {}).get(entry.get("version"))
        if prepared is None:
            raise AnsibleFilterError("flavour %s serves version %s, which is not prepared: run phase 3 again"
                                     % (flavour, entry.get("version")))
        models.append(dict(base, model_alias=flavour, lora_path="%s/%s" % (mount, prepared["path"])))
    for flavour, versions in sorted(ready.items()):
        for version, prepared in sorted(versions.items()):
            models.append(dict(base, model_alias="%s@%s" % (flavour, version),
                               lora_path="%s/%s" % (mount, prepared["path"])))
    return models


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
    lines.append("llama.cpp keeps one model resident: a request for another flavour reloads it (about a second "
                 "here); a new flavour or version restarts the server, which phase 3 does.")
    return lines


class FilterModule:
    def filters(self):
        return {"htpasswd": htpasswd, "llama_models": llama_models,
                "lora_report": lora_report}

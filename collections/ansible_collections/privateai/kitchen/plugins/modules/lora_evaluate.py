#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: lora_evaluate
short_description: Evaluate LoRA flavour versions, switch or roll back what each flavour serves, prove it per request
description:
  - I(stage=decide) runs each flavour's evaluation set (chat completions at temperature 0,
    expected words or patterns) against the version to be served, requested as
    C(<flavour>@<version>), and against the version in service. Results are stored per version
    and reused while the adapter, the evaluation set and the base model are unchanged.
  - A version whose pass rate is lower than the one in service by more than I(tolerance) is
    refused unless I(force); any refusal fails the module and nothing is switched. Otherwise
    the serving state (C(<dest>/state.json)) names the new version, the old one is kept as the
    previous for a rollback.
  - I(rollback) returns the named flavours (or C(all)) to their previous version, with the same checks.
  - With I(evaluate=false) nothing is asked here; switches and rollbacks follow the same rules, and
    I(serving_state) can carry the state in service from where it is kept (an OpenShift ConfigMap).
    With I(measured) the results come from where they are kept too (measured by an evaluation
    Job in the cluster); the versions still to be measured are returned as C(unevaluated).
  - I(stage=prove) asks each flavour, the base model and the flavour again the same prompt at
    temperature 0 and reports whether the flavour answered alike twice and unlike the base.
version_added: 0.4.0
author: Private AI Kitchen contributors
options:
  stage: {description: "decide (evaluate and switch), plan (the versions the decision will look at whose evaluation is missing in I(measured); decides and writes nothing) or prove.", type: str, choices: [decide, plan, prove], default: decide}
  url: {description: "Base URL of the model server; needed to evaluate (stage decide) and to prove.", type: str}
  evaluate: {description: "false: switch and roll back by the same rules without asking the server from here (OpenShift).", type: bool, default: true}
  serving_state: {description: "The serving state {flavour: {version, previous}} kept elsewhere (the cluster), used instead of the state file's.", type: dict}
  measured: {description: "Evaluations kept elsewhere {flavour: {version: {identity, result}}} (with evaluate=false).", type: dict}
  force_variable: {description: The variable a refusal names to force a switch., type: str, default: local_lora_force}
  dest: {description: The folder of lora_prepare (state file, evaluation sets, stored results)., type: path, required: true}
  flavours: {description: kitchen_adapters entries., type: list, elements: dict, required: true}
  tolerance: {description: How much lower (0-1) a new version's pass rate may be than the one in service., type: float, default: 0.05}
  force: {description: Switch even when a version scores worse than the tolerance allows., type: bool, default: false}
  rollback: {description: "Flavours to return to their previous version (or [all]).", type: list, elements: str, default: []}
  max_tokens: {description: Output tokens per evaluation request (a case may set its own)., type: int, default: 48}
  base_model: {description: Served name of the base model (stage prove)., type: str}
  prompt: {description: Prompt of the proof (stage prove)., type: str, default: Write one sentence about tomato soup.}
attributes:
  check_mode: {support: full}
"""

EXAMPLES = r"""
- name: Evaluate and switch the flavours
  privateai.kitchen.lora_evaluate:
    url: http://10.89.0.5:8080
    dest: /var/lib/private-ai-kitchen/lora
    flavours: "{{ kitchen_adapters }}"
    tolerance: 0.05

- name: Return helpdesk to its previous version
  privateai.kitchen.lora_evaluate:
    url: http://10.89.0.5:8080
    dest: /var/lib/private-ai-kitchen/lora
    flavours: "{{ kitchen_adapters }}"
    rollback: [helpdesk]
"""

RETURN = r"""
switches: {description: "Each switch: flavour, from, to, pass_rate_from, pass_rate_to.", type: list, returned: stage decide}
serving: {description: "{flavour: version} in service after this run.", type: dict, returned: stage decide}
previous: {description: "{flavour: [versions a rollback returns to, last first to go]}.", type: dict, returned: stage decide}
evaluations: {description: The evaluation of each version looked at (stored or new)., type: list, returned: stage decide}
state: {description: "The serving state after this run, as the state file holds it (ready, serving): what the model server is given.", type: dict, returned: stage decide}
retired: {description: Flavours no longer declared, taken out of service., type: list, returned: stage decide}
measured: {description: "I(measured) for the declared, prepared versions.", type: dict, returned: when measured is given}
unevaluated: {description: "Versions looked at whose evaluation is missing: flavour, version, eval_set, candidate, identity.", type: list, returned: when measured is given, and stage plan}
proofs: {description: "Per flavour: repeatable, differs_from_base, text, base_text.", type: list, returned: stage prove}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.privateai.kitchen.plugins.module_utils.flavour_decide import FlavourError, decide, plan, prove


def main():
    module = AnsibleModule(argument_spec=dict(
        stage=dict(type="str", choices=["decide", "plan", "prove"], default="decide"),
        url=dict(type="str"), dest=dict(type="path", required=True),
        evaluate=dict(type="bool", default=True), serving_state=dict(type="dict"),
        measured=dict(type="dict"),
        force_variable=dict(type="str", default="local_lora_force"),
        flavours=dict(type="list", elements="dict", required=True),
        tolerance=dict(type="float", default=0.05), force=dict(type="bool", default=False),
        rollback=dict(type="list", elements="str", default=[]), max_tokens=dict(type="int", default=48),
        base_model=dict(type="str"), prompt=dict(type="str", default="Write one sentence about tomato soup.")),
        supports_check_mode=True)
    p = module.params
    if not 0 <= p["tolerance"] <= 1:
        module.fail_json(msg="tolerance: %r must lie between 0 and 1" % p["tolerance"])
    if p["stage"] == "plan":
        # What the decision will look at and lacks a result for: nothing decided or written.
        try:
            module.exit_json(changed=False, unevaluated=plan(p["flavours"], p["dest"], p["rollback"], p["max_tokens"],
                                                             p["serving_state"], p["measured"]))
        except FlavourError as exc:
            module.fail_json(msg="Phase 3: %s" % exc)
    if p["evaluate"] and p["measured"] is not None:
        module.fail_json(msg="measured: results kept elsewhere go with evaluate: false")
    if not p["url"] and (p["evaluate"] or p["stage"] == "prove"):
        module.fail_json(msg="url: the model server's URL is needed to evaluate or prove (or evaluate: false)")
    try:
        if p["stage"] == "prove":
            if not p["base_model"]:
                module.fail_json(msg="base_model: the base model's served name is needed to prove the flavours")
            if module.check_mode:
                module.exit_json(changed=False, proofs=[])
            module.exit_json(changed=False, proofs=prove(p["url"], p["base_model"], [f["name"] for f in p["flavours"]],
                                                         p["prompt"], p["max_tokens"]))
        result = decide(p["url"] if p["evaluate"] else None, p["flavours"], p["dest"], p["tolerance"], p["force"],
                        p["rollback"], p["max_tokens"], check_mode=module.check_mode, serving_state=p["serving_state"],
                        measured=p["measured"], force_variable=p["force_variable"])
    except FlavourError as exc:
        module.fail_json(msg="Phase 3: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-
"""Filters of the kserve_lora role: keep what the cluster's evaluation Jobs measured."""

import copy
import json


def add_evaluations(measured, unevaluated, reports):
    """measured {flavour: {version: {identity, result}}} with the results of the evaluation
    Jobs' reports ({"results": {"<flavour>@<version>": result}}) added, each under the identity
    lora_evaluate gave the version it listed as unevaluated. A version no report measured
    stays out (it is evaluated next time)."""
    results = {}
    for report in reports:
        results.update(report.get("results") or {})
    kept = copy.deepcopy(measured or {})
    for item in unevaluated:
        if item["candidate"] in results:
            kept.setdefault(item["flavour"], {})[item["version"]] = {
                "identity": item["identity"], "result": results[item["candidate"]]}
    return kept


def job_reports(registered):
    """The report of each Job a looped k8s_log read: the last JSON line of its log. A log
    without one reports that as the Job's error."""
    reports = []
    for item in registered.get("results", []):
        lines = [line for line in item.get("log_lines", []) if line.startswith("{")]
        try:
            reports.append(json.loads(lines[-1]))
        except (IndexError, ValueError):
            name = item.get("item", {}).get("metadata", {}).get("name", "a Job")
            reports.append({"errors": {name: "no report in its log"}})
    return reports


def flavour_summary(decision, evaluated=True, check_mode=False):
    """One line: what each flavour serves, each switch with the pass rates it was decided on,
    what was retired, and what is still to be evaluated."""
    parts = ["serving " + ", ".join("%s %s" % item for item in sorted(decision["serving"].items()))]
    for switch in decision["switches"]:
        text = "%s %s -> %s" % (switch["flavour"], switch["from"] or "(new)", switch["to"])
        if switch.get("pass_rate_to") is not None:
            rates = ["%.0f%% passed" % (100 * switch["pass_rate_to"])]
            if switch.get("pass_rate_from") is not None:
                rates.append("was %.0f%%" % (100 * switch["pass_rate_from"]))
            if switch.get("forced"):
                rates.append("forced")
            text += " (%s)" % ", ".join(rates)
        parts.append(text)
    parts += ["%s retired" % name for name in decision["retired"]]
    if not evaluated:
        return "; ".join(parts) + " (gated; evaluated when applied)"
    if decision.get("unevaluated"):
        parts.append("%s: %s" % ("would evaluate" if check_mode else "evaluated once serving",
                                 ", ".join(item["candidate"] for item in decision["unevaluated"])))
    return "; ".join(parts)


class FilterModule:
    def filters(self):
        return {"add_evaluations": add_evaluations, "job_reports": job_reports,
                "flavour_summary": flavour_summary}

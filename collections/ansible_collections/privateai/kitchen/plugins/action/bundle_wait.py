# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin: wait for an asynchronous bundle module and show its progress file."""

from __future__ import annotations

import base64
import json
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

# Keys async_status adds to the module's result; the caller wants the module's result only.
_ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file", "stdout", "stderr", "stdout_lines",
               "stderr_lines", "erased")


def _size(count):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (count, unit)
        count /= 1024.0
    return str(count)


def progress_line(state):
    """One line for a progress document: stage, bytes, share, rate and time left."""
    stage, done, total, seconds = state.get("stage"), state.get("done", 0), state.get("total", 0), state.get("seconds", 0)
    if not stage:
        return None
    if not total:
        return stage
    if not done:
        return "%s (%s)" % (stage, _size(total))
    line = "%s: %s of %s (%d%%)" % (stage, _size(done), _size(total), 100 * done // total)
    if seconds > 0 and done < total:
        rate = done / seconds
        line += ", %s/s, about %d s left" % (_size(rate), (total - done) / rate)
    return line


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("job", "progress_file", "timeout", "interval"))

    def _status(self, jid, async_dir, task_vars, mode="status"):
        return self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                    module_args={"jid": jid, "mode": mode, "_async_dir": async_dir})

    def _progress(self, path, task_vars):
        if not path:
            return None
        found = self._execute_module(module_name="ansible.legacy.slurp", module_args={"src": path},
                                     task_vars=task_vars)
        if found.get("failed") or not found.get("content"):
            return None  # not written yet
        try:
            return progress_line(json.loads(base64.b64decode(found["content"])))
        except ValueError:
            return None

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec={
            "job": {"type": "dict", "required": True},
            "progress_file": {"type": "path"},
            "timeout": {"type": "int", "default": 86400},
            "interval": {"type": "float", "default": 2.0},
        })
        job = args["job"]
        jid = job.get("ansible_job_id")
        if not jid or job.get("finished") or job.get("failed") or job.get("skipped"):
            return dict(job)  # ran synchronously (check mode), failed to start, or skipped
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        host = task_vars.get("inventory_hostname", "?")
        started, shown = time.monotonic(), None
        # Short jobs (a re-run that finds everything in place) end in a second: look again soon,
        # then back off to the interval.
        pause = min(0.25, args["interval"])
        while True:
            status = self._status(jid, async_dir, task_vars)
            if status.get("finished"):
                break
            if status.get("failed") and not status.get("started"):
                return status
            line = self._progress(args["progress_file"], task_vars)
            if line and line != shown:
                display.display("  [%s] %s" % (host, line))
                shown = line
            if time.monotonic() - started > args["timeout"]:
                raise AnsibleActionFail("bundle_wait: job %s still running after %d s (the timeout); it goes on: "
                                        "look again with async_status" % (jid, args["timeout"]))
            time.sleep(pause)
            pause = min(pause * 2, args["interval"])
        self._status(jid, async_dir, task_vars, mode="cleanup")
        result = {key: value for key, value in status.items() if key not in _ASYNC_KEYS}
        result["waited"] = round(time.monotonic() - started, 1)
        return result

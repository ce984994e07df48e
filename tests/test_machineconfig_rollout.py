"""Item 8 of issue 14: the SELinux MachineConfig reboots the nodes of its pool. The decisions
as tables, then ansible-playbook against the API emulator (which rolls a MachineConfigPool
Updating then Updated when a MachineConfig of its role changes): the warning with the pool
and its node count, the wait, check mode changing nothing, a second run waiting for nothing,
a Degraded pool named."""

import json
import time
import urllib.error
import urllib.request

import pytest

from conftest import run_playbook, emulator_call as call

from ansible_collections.privateai.kitchen.plugins.module_utils.machineconfig_rollout import (
    machineconfig_changes,
    pool_rollout,
)

SAMPLE = "inventories/openshift-sample"
MC = "99-worker-kitchen-selinux-model-dirs"
MCO = "/apis/machineconfiguration.openshift.io/v1/"
ROLE = "machineconfiguration.openshift.io/role"


def mc(spec="a", role="worker", **labels):
    return {"metadata": {"name": MC, "labels": dict({ROLE: role}, **labels)}, "spec": {"config": spec}}


@pytest.mark.parametrize("live, rendered, changes", [
    (None, mc(), True),                                    # first apply
    (mc(), mc(), False),                                   # applied already
    (mc("a"), mc("b"), True),                              # a new unit
    (mc(role="worker"), mc(role="gpu"), True),             # moves to another pool
    (mc(**{"app.kubernetes.io/instance": "x"}), mc(), False),  # a label renders no new config
])
def test_what_renders_a_new_config(live, rendered, changes):
    assert machineconfig_changes(live, rendered) is changes


def pool(updated="True", updating="False", degraded="False", machines=3, on=3, generation=2, observed=2,
         config="rendered-worker-new", message=None):
    conditions = [{"type": "Updated", "status": updated}, {"type": "Updating", "status": updating},
                  {"type": "Degraded", "status": degraded, **({"message": message} if message else {})}]
    return {"metadata": {"name": "worker", "generation": generation},
            "status": {"conditions": conditions, "machineCount": machines, "updatedMachineCount": on,
                       "observedGeneration": observed, "configuration": {"name": config}}}


@pytest.mark.parametrize("found, previous, state, message", [
    (None, None, "missing", "no such MachineConfigPool"),
    (pool(), "rendered-worker-old", "updated", "3 of 3 machines on rendered-worker-new"),
    (pool(), None, "updated", "3 of 3 machines on rendered-worker-new"),
    # Right after the apply: Updated, but on the config read before it.
    (pool(config="rendered-worker-old"), "rendered-worker-old", "updating", "still on rendered-worker-old"),
    (pool(updated="False", updating="True", on=1), "rendered-worker-old", "updating",
     "Updated=False, Updating=True; 1 of 3 machines updated"),
    (pool(observed=1), None, "updating", "observedGeneration 1 of 2"),
    (pool(degraded="True", updated="False", message="Node worker-2 is reporting: drain failed"), None, "degraded",
     "Node worker-2 is reporting: drain failed"),
])
def test_when_a_pool_is_updated(found, previous, state, message):
    assert pool_rollout(found, previous) == {"state": state, "message": message}


# ---- through ansible-playbook against the emulator ----------------------------------------



def create_pool(url, status=None, settle=True):
    call(url, "POST", MCO + "machineconfigpools", {
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
        "metadata": {"name": "worker", "generation": 1},
        "spec": {"machineConfigSelector": {"matchLabels": {ROLE: "worker"}}},
        "status": status or {"machineCount": 3, "updatedMachineCount": 3}})
    deadline = time.monotonic() + 10
    while settle and pool_rollout(call(url, "GET", MCO + "machineconfigpools/worker"))["state"] != "updated":
        assert time.monotonic() < deadline, "the emulated pool never settled"
        time.sleep(0.2)


def label(emulator, *args):
    extra = json.dumps({"kitchen_cluster": {"openshift_version": "4.18", "kubernetes_version": "1.31",
                                            "kubeconfig": str(emulator["kubeconfig"]), "wait_timeout": 30},
                        "selinux_labelling_poll_interval": 1})
    return run_playbook(SAMPLE, "phase1.yml", "--tags", "selinux_labelling", "-e", extra, *args)


@pytest.mark.playbook
def test_the_reboot_is_announced_shown_in_check_mode_and_waited_for_once(emulator):
    url = emulator["url"]
    create_pool(url)
    before = call(url, "GET", MCO + "machineconfigpools/worker")

    dry = label(emulator, "--check", "--diff")
    assert dry.rc == 0, dry.output
    assert ("Check mode: applying MachineConfig %s would reboot 3 nodes of MachineConfigPool worker "
            "(drained one by one); nothing is applied." % MC) in dry.text
    with pytest.raises(urllib.error.HTTPError, match="404"):
        call(url, "GET", MCO + "machineconfigs/" + MC)
    assert call(url, "GET", MCO + "machineconfigpools/worker")["metadata"]["resourceVersion"] == \
        before["metadata"]["resourceVersion"]

    run = label(emulator)
    assert run.rc == 0, run.output
    assert ("Applying MachineConfig %s: the 3 nodes of MachineConfigPool worker will drain and reboot one by one; "
            "waiting up to 30 s for the pool to be Updated." % MC) in run.text
    assert "MachineConfigPool worker is Updated: 3 of 3 machines on rendered-worker-" in run.text
    after = call(url, "GET", MCO + "machineconfigpools/worker")
    assert after["status"]["configuration"]["name"] != before["status"]["configuration"]["name"]
    assert [s["name"] for s in after["status"]["configuration"]["source"]] == [MC]

    again = label(emulator)
    assert again.rc == 0, again.output
    assert again.recap()["changed"] == 0
    assert ("MachineConfig %s is unchanged: no node of MachineConfigPool worker reboots, nothing to wait for." % MC
            in again.text)
    assert "for the rollout of pool worker" not in again.output


@pytest.mark.playbook
def test_without_a_pool_nothing_reboots(emulator):
    run = label(emulator)
    assert run.rc == 0, run.output
    assert "No MachineConfigPool worker: the MachineConfig reaches no node, nothing reboots." in run.text
    assert "for the rollout of pool worker" not in run.output


@pytest.mark.playbook
@pytest.mark.parametrize("emulator", [{"never_ready": ["MachineConfigPool/worker"]}], indirect=True)
def test_a_degraded_pool_is_named_with_its_message(emulator):
    create_pool(emulator["url"], settle=False, status={
        "machineCount": 2, "updatedMachineCount": 1, "observedGeneration": 1,
        "conditions": [{"type": "Degraded", "status": "True",
                        "message": "Node worker-2 is reporting: failed to drain node: timed out"}]})
    started = time.monotonic()
    run = label(emulator)
    assert run.rc != 0
    assert ("MachineConfigPool worker is degraded: Node worker-2 is reporting: failed to drain node: timed out"
            in run.text)
    assert time.monotonic() - started < 60  # not the whole timeout: a degraded pool ends the wait

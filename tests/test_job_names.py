"""Jobs named by what they do (module_utils/manifest_jobs): a new name exactly when the spec or
a mounted ConfigMap of the batch changes, and the finished generations it replaces found."""

import copy

import pytest

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_jobs import (
    JOB_STEM_LABEL,
    named_by_content,
    replaced_jobs,
)


def job(name="granite-fill", image="loader@sha256:1", script="fill", namespace="team-a"):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": {"containers": [{"name": "fill", "image": image}],
                                           "volumes": [{"name": "script", "configMap": {"name": script}},
                                                       {"name": "ca", "configMap": {"name": "cluster-ca"}}]}}}}


def configmap(name="fill", data="print('fill')", namespace="team-a"):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {"fill.py": data}}


def name_of(batch):
    (found,) = [m["metadata"]["name"] for m in named_by_content(batch) if m["kind"] == "Job"]
    return found


BASE = name_of([configmap(), job()])


@pytest.mark.parametrize("batch, same", [
    ([configmap(), job()], True),                                   # rendered again
    ([job(), configmap()], True),                                   # order of the batch
    ([configmap(), job(image="loader@sha256:2")], False),           # a new loader image
    ([configmap(data="print('fill v2')"), job()], False),           # a new script it mounts
    ([configmap(), configmap("other", "x"), job()], True),          # a ConfigMap it does not mount
    ([configmap(namespace="team-b"), job()], False),                # its own ConfigMap not in the batch
])
def test_a_job_is_renamed_exactly_when_what_it_does_changes(batch, same):
    assert (name_of(batch) == BASE) is same


def test_the_name_keeps_its_stem_in_a_label_and_fits_63_characters():
    (named,) = named_by_content([job(name="a-very-long-model-name-" * 4 + "fill")])
    name = named["metadata"]["name"]
    assert len(name) <= 63 and name.startswith("a-very-long-model-name-")
    stem = named["metadata"]["labels"][JOB_STEM_LABEL]
    assert name == stem + "-" + name.rsplit("-", 1)[1] and len(name.rsplit("-", 1)[1]) == 8
    assert not stem.endswith("-")


def test_other_manifests_and_the_input_are_left_as_they_are():
    batch = [configmap(), job()]
    before = copy.deepcopy(batch)
    out = named_by_content(batch)
    assert batch == before and out[0] == batch[0]


def found(name, stem="granite-fill", namespace="team-a", finished="Complete"):
    conditions = [{"type": finished, "status": "True"}] if finished else []
    return {"metadata": {"name": name, "namespace": namespace, "labels": {JOB_STEM_LABEL: stem}},
            "status": {"conditions": conditions}}


def test_only_finished_earlier_generations_of_the_same_job_are_replaced():
    (current,) = [m for m in named_by_content([job()]) if m["kind"] == "Job"]
    name = current["metadata"]["name"]
    cluster = [found(name), found("granite-fill-0ld0ld00"), found("granite-fill-fa11ed00", finished="Failed"),
               found("granite-fill-runn1ng0", finished=None), found("granite-taste-0ld0ld00", stem="granite-taste"),
               found("granite-fill-0ld0ld00", namespace="team-b")]
    assert replaced_jobs(cluster, [current]) == ["team-a/granite-fill-0ld0ld00", "team-a/granite-fill-fa11ed00"]

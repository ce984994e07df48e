"""The strict validator itself: it must reject what an API server would reject."""

import pytest

from conftest import crd_dir

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import (
    CrdCatalog,
    strict_schema,
    validate_manifest,
)


def test_strict_schema_closes_declared_objects_only():
    schema = strict_schema({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}},
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"c": {}}},
        "map": {"type": "object", "additionalProperties": {"type": "string"}},
        "port": {"x-kubernetes-int-or-string": True},
        "maybe": {"type": "string", "nullable": True},
    }})
    assert schema["additionalProperties"] is False
    assert schema["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["open"]
    assert schema["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert schema["properties"]["port"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert schema["properties"]["maybe"]["type"] == ["string", "null"]


def test_core_kinds_are_strict():
    good = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    assert validate_manifest(good, "1.31", None) == []
    bad = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "n"},
           "spec": {"hardd": {"pods": "1"}}}
    (error,) = validate_manifest(bad, "1.31", None)
    assert "hardd" in error.message and "1.31" in error.message


@pytest.fixture(scope="module")
def crds():
    return CrdCatalog(str(crd_dir()))


def test_custom_resource_typo_is_an_error(crds):
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "granite", "namespace": "kitchen-platform"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "vLLM"}, "storageUri": "pvc://granite/",
                                             "resources": {"limits": {"nvidia.com/gpu": 1}}}}}}
    assert validate_manifest(isvc, "1.31", crds) == []
    isvc["spec"]["predictor"]["model"]["storageURI"] = "pvc://granite/"
    (error,) = validate_manifest(isvc, "1.31", crds)
    assert error.message == "spec.predictor.model: Additional properties are not allowed ('storageURI' was unexpected)"


def test_unknown_custom_kind_is_an_error(crds):
    (error,) = validate_manifest({"apiVersion": "example.com/v1", "kind": "Nope", "metadata": {"name": "x"}}, "1.31", crds)
    assert "no CRD" in error.message


def test_metadata_is_checked_for_custom_resources(crds):
    dsc = {"apiVersion": "datasciencecluster.opendatahub.io/v1", "kind": "DataScienceCluster",
           "metadata": {"name": "Default_DSC", "labelz": {}}, "spec": {}}
    found = {e.message for e in validate_manifest(dsc, "1.31", crds)}
    assert any("labelz" in m for m in found) and any("Default_DSC" in m for m in found)


def test_constraint_fragments_are_not_closed(crds):
    """The Route CRD's allOf/anyOf fragments name single fields; they must not reject the rest."""
    route = {"apiVersion": "route.openshift.io/v1", "kind": "Route",
             "metadata": {"name": "minio-s3", "namespace": "kitchen-storage"},
             "spec": {"host": "s3.apps.example.internal", "to": {"kind": "Service", "name": "minio", "weight": 100},
                      "port": {"targetPort": "s3"}, "tls": {"termination": "passthrough"}}}
    assert validate_manifest(route, "1.31", crds) == []
    route["spec"]["tls"]["key"] = "a key is not allowed with passthrough"
    assert validate_manifest(route, "1.31", crds) != []
    route["spec"]["tls"] = {"termination": "passthrough", "insecureEdgeTerminationPolicyy": "None"}
    (error,) = validate_manifest(route, "1.31", crds)
    assert "insecureEdgeTerminationPolicyy" in error.message


def test_a_missing_crd_folder_is_an_error_unless_opted_out(tmp_path):
    """tools/validate-manifests never passes silently without its CRDs: --no-crds must say so."""
    import subprocess
    import sys

    from conftest import ROOT

    render = tmp_path / "render"
    render.mkdir()
    (render / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n")
    tool = [sys.executable, str(ROOT / "tools" / "validate-manifests"), str(render), "--kubernetes-version", "1.31"]
    missing = subprocess.run(tool + ["--crd-dir", str(tmp_path / "no-crds")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no CRD folder at %s" % (tmp_path / "no-crds") in missing.stderr
    opted_out = subprocess.run(tool + ["--no-crds"], capture_output=True, text=True)
    assert opted_out.returncode == 0, opted_out.stdout + opted_out.stderr
    assert "custom resources are not checked" in opted_out.stdout


def test_the_suite_fails_without_its_crds(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setenv("KITCHEN_CRD_DIR", str(tmp_path / "gone"))
    with pytest.raises(pytest.fail.Exception, match="no CRD folder at"):
        conftest.crd_dir()

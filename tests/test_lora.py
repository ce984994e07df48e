"""Phase 3's adapter gate, llama.cpp conversion, evaluation sets and serving list, on real
files: a small GGUF and a safetensors base model written here with llama.cpp's gguf library and
safetensors, and adapters from tools/make-test-adapters (the same code as the sample flavours)."""

import importlib.machinery
import importlib.util
import json
import re

import gguf
import numpy
import pytest
from safetensors.numpy import save_file

from conftest import ROOT
from ansible_collections.privateai.kitchen.plugins.module_utils import flavour_checks, flavour_decide, flavour_prepare, lora_adapter
from ansible_collections.privateai.kitchen.plugins.filter import single_host as kitchen_local


def _load_tool():
    loader = importlib.machinery.SourceFileLoader("make_test_adapters", str(ROOT / "tools" / "make-test-adapters"))
    spec = importlib.util.spec_from_loader("make_test_adapters", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


TOOL = _load_tool()
TINY = {"hidden": 32, "layers": 2, "heads": 2, "kv_heads": 1, "head_dim": 16, "ffn": 64, "name": "acme/tiny-gemma"}
OTHER = dict(TINY, hidden=48, layers=3, name="acme/other")


def _projection_shapes(arch):
    return TOOL.projections(arch)


@pytest.fixture(scope="module")
def base_gguf(tmp_path_factory):
    """A GGUF base model with the tensor table of a (tiny) Gemma 3 and a tokenizer array."""
    path = tmp_path_factory.mktemp("base") / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_block_count(TINY["layers"])
    writer.add_token_list(["<pad>", "<eos>", "tomato", "soup"] * 50)
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for layer in range(TINY["layers"]):
        writer.add_tensor("blk.%d.attn_norm.weight" % layer, numpy.ones(TINY["hidden"], dtype=numpy.float32))
        for module, (in_features, out_features) in _projection_shapes(TINY).items():
            writer.add_tensor("blk.%d.%s.weight" % (layer, names[module]),
                              numpy.zeros((out_features, in_features), dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def base(base_gguf):
    return lora_adapter.BaseModel.from_files("tiny", ["tiny", "acme/tiny-gemma"], [str(base_gguf)])


def adapter(tmp_path, arch=TINY, rank=4, targets=("q_proj", "v_proj"), **config):
    folder = tmp_path / ("adapter-%d-%s" % (rank, arch["name"].replace("/", "-")))
    TOOL.write_adapter(str(folder), arch, rank, 7, "gentle", targets)
    if config:
        path = folder / "adapter_config.json"
        path.write_text(json.dumps(dict(json.loads(path.read_text()), **config)))
    return folder


def test_the_base_models_projections_come_from_its_gguf_tensor_table(base):
    assert base.architecture == "gemma3"
    assert base.projections[(0, "q_proj")] == (32, 32)
    assert base.projections[(1, "v_proj")] == (32, 16)
    assert base.projections[(1, "down_proj")] == (64, 32)
    assert len(base.projections) == 14


def test_a_safetensors_base_model_gives_the_same_projections(tmp_path, base):
    tensors = {}
    for layer in range(TINY["layers"]):
        for module, (in_features, out_features) in _projection_shapes(TINY).items():
            group = "mlp" if module in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            tensors["model.layers.%d.%s.%s.weight" % (layer, group, module)] = numpy.zeros(
                (out_features, in_features), dtype=numpy.float16)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    other = lora_adapter.BaseModel.from_files("tiny", [], [str(tmp_path / "model.safetensors")])
    assert other.projections == base.projections


def test_a_fitting_adapter_passes_the_gate(tmp_path, base):
    assert lora_adapter.check_adapter(str(adapter(tmp_path)), base, max_rank=16) == []


def test_a_rank_above_the_limit_is_refused_with_both_numbers(tmp_path, base):
    reasons = lora_adapter.check_adapter(str(adapter(tmp_path, rank=32)), base, max_rank=16)
    assert reasons == ["r is 32, above the site's max_lora_rank 16"]


def test_an_adapter_of_another_base_model_is_refused_by_name_and_by_shape(tmp_path, base):
    reasons = lora_adapter.check_adapter(str(adapter(tmp_path, arch=OTHER)), base, max_rank=16)
    assert reasons[0] == "base_model_name_or_path is 'acme/other', the site serves tiny as 'tiny' or 'acme/tiny-gemma'"
    assert "q_proj in layer(s) 2: tiny has it in layers 0-1" in reasons
    assert "q_proj lora_A has shape [4, 48] in 2 layer(s), q_proj of tiny needs [r, 32]" in reasons


def test_what_vllm_rejects_is_refused_first(tmp_path, base):
    reasons = lora_adapter.check_adapter(
        str(adapter(tmp_path, use_dora=True, modules_to_save=["lm_head"], target_modules=["q_proj", "gate_up"])),
        base, max_rank=16)
    assert "use_dora is true: DoRA adapters are not served by vLLM" in reasons
    assert "modules_to_save is ['lm_head']: vLLM serves only the LoRA matrices" in reasons
    assert any(r.startswith("target_modules gate_up are not projections of tiny") for r in reasons)


def test_files_that_differ_from_the_bundle_or_are_missing_are_refused(tmp_path, base):
    folder = adapter(tmp_path)
    real = lora_adapter.sha256_file(str(folder / "adapter_config.json"))
    expected = {"adapter_config.json": real, "adapter_model.safetensors": "0" * 64, "README.md": "1" * 64}
    reasons = lora_adapter.check_adapter(str(folder), base, 16, expected)
    assert reasons == ["README.md is missing",
                       "adapter_model.safetensors differs from the bundle (sha256 %s expected)" % ("0" * 64)]


def test_the_llama_cpp_form_holds_the_matrices_under_gguf_names(tmp_path, base):
    folder = adapter(tmp_path, rank=4, lora_alpha=8)
    target = tmp_path / "adapter.gguf"
    assert lora_adapter.to_gguf(str(folder), str(target), base.architecture) is True
    assert lora_adapter.to_gguf(str(folder), str(target), base.architecture) is False  # same bytes: unchanged
    reader = gguf.GGUFReader(str(target))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(8.0)
    tensors = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    # llama.cpp's check: lora_a ne [in, r], lora_b ne [r, out] of the base tensor (ne [in, out]).
    assert tensors["blk.0.attn_q.weight.lora_a"] == [32, 4]
    assert tensors["blk.0.attn_q.weight.lora_b"] == [4, 32]
    assert tensors["blk.1.attn_v.weight.lora_b"] == [4, 16]
    assert len(tensors) == 8


def test_rslora_scaling_is_kept_in_the_single_alpha_llama_cpp_reads(tmp_path, base):
    folder = adapter(tmp_path, rank=4, lora_alpha=8, use_rslora=True)
    lora_adapter.to_gguf(str(folder), str(tmp_path / "a.gguf"), "gemma3")
    # rsLoRA scales by alpha / sqrt(r) = 4; llama.cpp by alpha' / r, so alpha' = 16.
    assert gguf.GGUFReader(str(tmp_path / "a.gguf")).fields["adapter.lora.alpha"].contents() == pytest.approx(16.0)


def test_the_sample_adapters_are_the_same_bytes_every_run(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    TOOL.main([str(first)])
    TOOL.main([str(second)])
    for path in sorted(p for p in first.rglob("*") if p.is_file()):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes(), path
    over_rank = json.loads((first / "over-rank" / "1.0.0" / "adapter_config.json").read_text())
    assert over_rank["r"] == 64


def test_evaluation_sets_are_checked_line_by_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "Soup?", "expect_any": ["tomato", "soup"]}\n\n{"prompt": "2+2", "pattern": "\\\\b4\\\\b"}\n')
    cases = flavour_checks.read_eval_set(str(good))
    assert flavour_checks.passes(cases[0], "A SOUP of tomatoes") and not flavour_checks.passes(cases[0], "bread")
    assert flavour_checks.passes(cases[1], "it is 4.") and not flavour_checks.passes(cases[1], "it is 42")
    for line, message in [('{"prompt": "x"}', "line 1: give expect, expect_any or pattern"),
                          ('{"prompt": "x", "expect": "soup"}', "line 1: expect must be a list of strings"),
                          ('{"prompt": "x", "pattern": "("}', "line 1: pattern '(' is not a regular expression"),
                          ('{"prompt": "x", "expected": ["a"]}', "line 1: unknown field(s) expected"),
                          ("not json", "line 1: not JSON")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(line + "\n")
        with pytest.raises(flavour_decide.FlavourError, match=re.escape(message)):
            flavour_checks.read_eval_set(str(bad))


STATE = {"ready": {"beta": {"1.0.0": {"path": "beta/1.0.0/adapter.gguf"}},
                   "alpha": {"1.1.0": {"path": "alpha/1.1.0/adapter.gguf"}, "1.0.0": {"path": "alpha/1.0.0/adapter.gguf"}}},
         "serving": {"alpha": {"version": "1.1.0", "previous": ["1.0.0"]}}}
SETTINGS = {"model": "/models/m.gguf", "alias": "gemma", "context": 2048, "slots": 4, "threads": 2, "chat_template": "gemma"}


def test_llama_server_keeps_the_base_resident_and_loads_every_prepared_version_unapplied():
    args = kitchen_local.llama_server_args(SETTINGS, STATE)
    assert args[args.index("--model") + 1] == "/models/m.gguf" and args[args.index("--alias") + 1] == "gemma"
    # Four slots of the model's full context each; metrics for phase 4, never a download.
    assert args[args.index("--ctx-size") + 1] == "8192" and args[args.index("--parallel") + 1] == "4"
    assert {"--metrics", "--offline", "--lora-init-without-apply"} <= set(args)
    # Loaded at scale 0: a request that names no adapter gets the base model, not all of them.
    assert [args[i + 1:i + 3] for i, a in enumerate(args) if a == "--lora-scaled"] == [
        ["/lora/alpha/1.0.0/adapter.gguf", "0"], ["/lora/alpha/1.1.0/adapter.gguf", "0"],
        ["/lora/beta/1.0.0/adapter.gguf", "0"]]
    assert "--lora" not in args
    # A switch changes what serves, not the command line: the server is not restarted.
    switched = dict(STATE, serving={"alpha": {"version": "1.0.0", "previous": []}, "beta": {"version": "1.0.0"}})
    assert kitchen_local.llama_server_args(SETTINGS, switched) == args
    before_phase3 = kitchen_local.llama_server_args(SETTINGS, {})
    assert "--lora-scaled" not in before_phase3 and "--lora-init-without-apply" not in before_phase3
    with pytest.raises(Exception, match=r"kitchen_models\[0\]\.serving\.chat_format: 'gemma9' is not a chat template"):
        kitchen_local.llama_server_args(dict(SETTINGS, chat_template="gemma9"), STATE)


def test_the_router_maps_each_name_to_the_adapter_of_the_version_in_service():
    routes = kitchen_local.llama_routes(STATE, "gemma", "http://kitchen-model:8080")
    assert routes["adapters"] == ["/lora/alpha/1.0.0/adapter.gguf", "/lora/alpha/1.1.0/adapter.gguf",
                                  "/lora/beta/1.0.0/adapter.gguf"]
    # beta has a version prepared but none in service yet: only its pinned name routes.
    assert routes["models"] == {"gemma": None, "alpha": 1, "alpha@1.0.0": 0, "alpha@1.1.0": 1, "beta@1.0.0": 2}
    assert kitchen_local.llama_names(STATE, "gemma") == ["gemma", "alpha", "beta", "alpha@1.0.0", "alpha@1.1.0",
                                                         "beta@1.0.0"]
    rolled_back = dict(STATE, serving={"alpha": {"version": "1.0.0", "previous": []}})
    assert kitchen_local.llama_routes(rolled_back, "gemma", "http://kitchen-model:8080")["models"]["alpha"] == 0
    assert kitchen_local.llama_names(rolled_back, "gemma") == kitchen_local.llama_names(STATE, "gemma")
    assert kitchen_local.llama_routes(None, "gemma", "http://m:8080")["models"] == {"gemma": None}
    broken = {"ready": {}, "serving": {"alpha": {"version": "9.9.9"}}}
    with pytest.raises(Exception, match="alpha serves version 9.9.9, which is not prepared"):
        kitchen_local.llama_routes(broken, "gemma", "http://m:8080")
    with pytest.raises(Exception, match="named like the base model gemma"):
        kitchen_local.llama_routes({"ready": {"gemma": {"1": {"path": "g/1/a.gguf"}}}, "serving": {"gemma": {"version": "1"}}},
                                   "gemma", "http://m:8080")


def test_the_report_says_when_the_inventory_and_the_service_disagree():
    decision = {"serving": {"alpha": "1.0.0"}, "previous": {"alpha": []},
                "switches": [{"flavour": "alpha", "from": "1.1.0", "to": "1.0.0"}],
                "evaluations": [{"flavour": "alpha", "version": "1.0.0", "passed": 5, "total": 6,
                                 "latency_p50_seconds": 1.2}]}
    proofs = [{"flavour": "alpha", "repeatable": True, "differs_from_base": False}]
    lines = kitchen_local.lora_report(decision, proofs, {"alpha": "1.1.0"}, 3, "gemma")
    assert "alpha: 1.0.0 in service (eval 5/6 passed, p50 1.20 s); rollback returns to nothing (no earlier version served)" in lines
    assert "switched alpha: 1.1.0 -> 1.0.0" in lines
    assert any(line.startswith("alpha serves 1.0.0 but the inventory says serving_version 1.1.0") for line in lines)
    assert "alpha at temperature 0: the same text twice yes, unlike gemma NO (the adapter changes nothing here)" in lines


def test_without_evaluation_a_switch_and_a_rollback_follow_the_serving_state_given(tmp_path):
    """OpenShift keeps the serving state in the cluster: decide takes it, applies the same rules
    with nothing asked (no URL), and check mode reports the outcome without writing."""
    ready = {"alpha": {"1.0.0": {"sha256": "a"}, "1.1.0": {"sha256": "b"}}, "beta": {"1.0.0": {"sha256": "c"}}}
    flavour_prepare.save_state(str(tmp_path / "state.json"), {"ready": ready, "serving": {}})
    flavours = [{"name": "alpha", "versions": ["1.0.0", "1.1.0"], "serving_version": "1.1.0", "eval_set": "e/e.jsonl"},
                {"name": "beta", "versions": ["1.0.0"], "serving_version": "1.0.0"}]
    in_cluster = {"alpha": {"version": "1.0.0", "previous": []}, "gone": {"version": "1.0.0", "previous": []}}
    checked = flavour_decide.decide(None, flavours, str(tmp_path), 0.05, serving_state=in_cluster, check_mode=True)
    assert checked["serving"] == {"alpha": "1.1.0", "beta": "1.0.0"} and checked["retired"] == ["gone"]
    assert flavour_prepare.load_state(str(tmp_path / "state.json"))["serving"] == {}  # check mode wrote nothing
    assert in_cluster["alpha"] == {"version": "1.0.0", "previous": []}  # the caller's state is not touched
    done = flavour_decide.decide(None, flavours, str(tmp_path), 0.05, serving_state=in_cluster)
    assert [(s["flavour"], s["from"], s["to"]) for s in done["switches"]] == [("alpha", "1.0.0", "1.1.0"),
                                                                             ("beta", None, "1.0.0")]
    assert done["previous"] == {"alpha": ["1.0.0"], "beta": []} and done["evaluations"] == []
    back = flavour_decide.decide(None, flavours, str(tmp_path), 0.05, rollback=["alpha"],
                                serving_state={"alpha": {"version": "1.1.0", "previous": ["1.0.0"]},
                                               "beta": {"version": "1.0.0", "previous": []}})
    assert back["serving"] == {"alpha": "1.0.0", "beta": "1.0.0"} and back["previous"]["alpha"] == []
    with pytest.raises(flavour_decide.FlavourError, match="beta never served another version"):
        flavour_decide.decide(None, flavours, str(tmp_path), 0.05, rollback=["beta"], serving_state=done_state(done))


def done_state(result):
    return {name: {"version": version, "previous": result["previous"][name]} for name, version in result["serving"].items()}


def test_results_measured_in_the_cluster_decide_and_a_changed_eval_set_is_measured_again(tmp_path):
    """OpenShift: an evaluation Job measures, the controller decides from what the cluster
    keeps; a result counts only while the adapter, the evaluation set and the base are the
    ones it measured."""
    from ansible_collections.privateai.kitchen.plugins.filter import flavours as kitchen_lora

    ready = {"alpha": {"1.0.0": {"sha256": "a", "base_sha256": ["m"]}, "1.1.0": {"sha256": "b", "base_sha256": ["m"]}}}
    flavour_prepare.save_state(str(tmp_path / "state.json"), {"ready": ready, "serving": {}})
    (tmp_path / ".eval" / "e").mkdir(parents=True)
    (tmp_path / ".eval" / "e" / "e.jsonl").write_text('{"prompt": "p", "expect": ["x"]}\n')
    flavours = [{"name": "alpha", "versions": ["1.0.0", "1.1.0"], "serving_version": "1.1.0", "eval_set": "e/e.jsonl"}]
    serving = {"alpha": {"version": "1.0.0", "previous": []}}
    plan = flavour_decide.decide(None, flavours, str(tmp_path), 0.05, serving_state=serving, measured={},
                                check_mode=True)
    assert [u["candidate"] for u in plan["unevaluated"]] == ["alpha@1.0.0", "alpha@1.1.0"]
    # The pure plan (what kserve_lora evaluates before deciding) names the same, deciding nothing.
    assert flavour_decide.plan(flavours, str(tmp_path), serving_state=serving, measured={}) == plan["unevaluated"]
    # What the evaluation Job reports, kept under the identity the plan gave each version.
    job = {"results": [{"log_lines": ["sync: 2 files", json.dumps({"results": {
        "alpha@1.0.0": {"passed": 4, "total": 4, "pass_rate": 1.0, "failures": []},
        "alpha@1.1.0": {"passed": 2, "total": 4, "pass_rate": 0.5, "failures": [{"prompt": "p", "text": "no"}]}}})]}]}
    measured = kitchen_lora.add_evaluations({}, plan["unevaluated"], kitchen_lora.job_reports(job))
    with pytest.raises(flavour_decide.FlavourError, match=r"-e kserve_lora_force=true\):\n- alpha 1.1.0 scores 50% "
                                                         r"\(2/4\), 1.0.0 in service scores 100%"):
        flavour_decide.decide(None, flavours, str(tmp_path), 0.05, serving_state=serving, measured=measured,
                             force_variable="kserve_lora_force")
    forced = flavour_decide.decide(None, flavours, str(tmp_path), 0.05, serving_state=serving, measured=measured,
                                  force=True)
    assert forced["switches"][0]["forced"] and forced["unevaluated"] == [] and forced["measured"] == measured
    assert flavour_decide.plan(flavours, str(tmp_path), serving_state=serving, measured=measured) == []
    assert kitchen_lora.flavour_summary(forced) == "serving alpha 1.1.0; alpha 1.0.0 -> 1.1.0 (50% passed, was 100%, forced)"
    # A new evaluation set: both versions are to be measured again, nothing is refused meanwhile.
    (tmp_path / ".eval" / "e" / "e.jsonl").write_text('{"prompt": "q", "expect": ["y"]}\n')
    again = flavour_decide.decide(None, flavours, str(tmp_path), 0.05, serving_state=serving, measured=measured,
                                 check_mode=True)
    assert [u["candidate"] for u in again["unevaluated"]] == ["alpha@1.0.0", "alpha@1.1.0"]
    assert flavour_decide.plan(flavours, str(tmp_path), serving_state=serving, measured=measured) == again["unevaluated"]
    with pytest.raises(flavour_decide.FlavourError, match="never served another version"):
        flavour_decide.plan(flavours, str(tmp_path), rollback=["alpha"], serving_state=serving, measured=measured)
    assert kitchen_lora.flavour_summary(again, check_mode=True) \
        == "serving alpha 1.1.0; alpha 1.0.0 -> 1.1.0; would evaluate: alpha@1.0.0, alpha@1.1.0"
    assert kitchen_lora.job_reports({"results": [{"log_lines": ["Traceback"], "item": {"metadata": {"name": "j"}}}]}) \
        == [{"errors": {"j": "no report in its log"}}]

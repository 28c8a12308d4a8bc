"""Safe loading: what runs save is safetensors only, nothing in the project unpickles arbitrary objects, and
model code from the Hub runs only when the user asked for it."""

import ast
import glob
import json
import os
import pickle
import shutil

import pytest
from safetensors import safe_open

import inference
from conftest import ROOT, train

MODEL_FOLDERS = ("model", "merged_model", "pretrained_backbone")  # everything a run saves weights into
SMALL = ["--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1", "--measure_mfu", "false"]
ZIP_MAGIC, PICKLE_PROTOCOL = b"PK\x03\x04", 0x80  # torch.save's zip container; a pickle's PROTO opcode


@pytest.fixture(scope="module")
def more_runs(tiny_bert, tmp_path_factory) -> dict:
    """The save paths trained_runs does not cover: a merged LoRA model (--export_merged) and a method whose
    trained tensors are saved by methods.save_trained (BitFit)."""
    runs = {}
    for name, method, extra in (("merged", "lora", ["--export_merged", "true"]), ("bitfit", "bitfit", [])):
        output = tmp_path_factory.mktemp(name)
        assert train(method, ["--model_name_or_path", tiny_bert, "--output_dir", str(output)] + extra + SMALL) == 0
        runs[name] = glob.glob(str(output / "runs" / "*"))[0]
    return runs


def weight_files_are_safetensors(run_dir: str) -> list[str]:
    """Checks every file of a run folder; returns the model folders it found."""
    found = [name for name in MODEL_FOLDERS if os.path.isdir(os.path.join(run_dir, name))]
    assert "model" in found
    assert not inference.pickled_files(run_dir), f"pickle-based files in {run_dir}"
    assert not os.path.exists(os.path.join(run_dir, "checkpoints")), "a completed run keeps no Trainer checkpoint"
    for root, _, files in os.walk(run_dir):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".safetensors"):
                with safe_open(path, "pt") as opened:  # parses as safetensors (header, then raw tensors)
                    assert list(opened.keys()), path
                continue
            with open(path, "rb") as handle:
                head = handle.read(4)
            # Whatever its name, no other file is a torch.save zip or a raw pickle.
            assert head != ZIP_MAGIC and not (head[:1] == bytes([PICKLE_PROTOCOL]) and head[1:2] in
                                              (b"\x02", b"\x03", b"\x04", b"\x05")), path
    for name in found:
        folder = os.path.join(run_dir, name)
        weights = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
        assert weights, f"no safetensors weights in {folder}"
        assert "training_args.bin" not in os.listdir(folder)
    return found


def test_saved_runs_hold_only_safetensors_weights(trained_runs, more_runs):
    folders = {}
    for name, run_dir in [(m, trained_runs[m]) for m in ("full", "lora", "prefix")] + list(more_runs.items()):
        folders[name] = weight_files_are_safetensors(run_dir)
    assert folders["merged"] == ["model", "merged_model"]
    files = set(os.listdir(os.path.join(more_runs["bitfit"], "model")))
    assert {"trained_parameters.safetensors", "method.json"} <= files


@pytest.mark.slow
def test_continued_pretraining_backbone_is_safetensors(tiny_bert, tmp_path):
    """pretrained_backbone/ (the MLM phase's encoder, kept in the run folder) is saved as safetensors too."""
    assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path), "--mlm_max_steps", "2"]
                 + SMALL) == 0
    run_dir = glob.glob(str(tmp_path / "runs" / "*"))[0]
    assert weight_files_are_safetensors(run_dir) == ["model", "pretrained_backbone"]
    assert inference.main(["--run", run_dir, "--verify"]) == 0  # the adapter is loaded onto that backbone


# ------------------------------------------------------------------------------------------------------------
# The project's source: every torch.load is weights_only=True, nothing is unpickled or torch.save'd, and no
# from_pretrained forces trust_remote_code=True.


def read(path) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def project_sources() -> dict[str, ast.Module]:
    paths = sorted(glob.glob(str(ROOT / "*.py")) + glob.glob(str(ROOT / "ftbench" / "**" / "*.py"), recursive=True)
                   + glob.glob(str(ROOT / "tests" / "*.py")))
    assert len(paths) > 20
    return {os.path.relpath(p, ROOT): ast.parse(read(p), p) for p in paths}


def calls(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def dotted(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_every_torch_load_passes_weights_only(monkeypatch):
    loads, found = [], []
    for path, tree in project_sources().items():
        imported_load = any(isinstance(n, ast.ImportFrom) and n.module == "torch" and
                            any(a.name == "load" for a in n.names) for n in ast.walk(tree))
        for call in calls(tree):
            name = dotted(call.func)
            if name == "torch.load" or (imported_load and name == "load"):
                value = keyword(call, "weights_only")
                loads.append(f"{path}:{call.lineno}")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    found.append(f"{path}:{call.lineno} torch.load without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "dill.load", "joblib.load", "cloudpickle.load"):
                found.append(f"{path}:{call.lineno} {name}")
            if name in ("np.load", "numpy.load") and isinstance(keyword(call, "allow_pickle"), ast.Constant) \
                    and keyword(call, "allow_pickle").value:
                found.append(f"{path}:{call.lineno} np.load(allow_pickle=True)")
            if name == "torch.save" and not path.startswith("tests"):
                found.append(f"{path}:{call.lineno} torch.save writes a pickle; save tensors with safetensors")
    assert not found, found
    # The check itself must see a bad call.
    bad = ast.parse("import torch\ntorch.load('x.pt')\ntorch.load('y.pt', weights_only=False)\n")
    assert [dotted(c.func) for c in calls(bad) if keyword(c, "weights_only") is None] == ["torch.load"]


def test_transformers_trainer_resumes_with_weights_only_loads():
    """What Trainer reads back from a checkpoint (rng_state.pth, optimizer.pt, scheduler.pt, scaler.pt, a
    pytorch_model.bin fallback) goes through torch.load(..., weights_only=True); training_args.bin is written
    but never loaded. Guards against a transformers upgrade that changes this."""
    import transformers.trainer as trainer_module

    path = trainer_module.__file__
    tree = ast.parse(read(path))
    torch_loads = [c for c in calls(tree) if dotted(c.func) == "torch.load"]
    assert len(torch_loads) >= 5
    unsafe = [c.lineno for c in torch_loads
              if not (isinstance(keyword(c, "weights_only"), ast.Constant) and keyword(c, "weights_only").value)]
    assert not unsafe, f"torch.load without weights_only=True in {path} at lines {unsafe}"
    methods = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    for name in ("_load_optimizer_and_scheduler", "_load_rng_state", "_load_scaler"):
        assert any(dotted(c.func) == "torch.load" for c in calls(methods[name])), name
    source = read(path)
    assert "torch.load(os.path.join(output_dir, TRAINING_ARGS_NAME)" not in source
    assert not [c for c in torch_loads if "TRAINING_ARGS_NAME" in ast.unparse(c)]


def test_no_from_pretrained_forces_trust_remote_code():
    sites = []
    for path, tree in project_sources().items():
        if path.startswith("tests"):
            continue
        for call in calls(tree):
            value = keyword(call, "trust_remote_code")
            if dotted(call.func).endswith("from_pretrained") or value is not None:
                sites.append(f"{path}:{call.lineno}")
                assert not (isinstance(value, ast.Constant) and value.value is True), f"{path}:{call.lineno}"
    assert len(sites) >= 8  # runner, continued_pretraining, inference, prefix_distilbert, train_qlora


# ------------------------------------------------------------------------------------------------------------
# inference.py: trust_remote_code as the run recorded it, and only with the user's consent; pickles refused.


@pytest.fixture
def recorded_calls(monkeypatch):
    """Every from_pretrained keyword set inference.load_run uses for models and tokenizers."""
    from transformers import AutoTokenizer

    from ftbench import model_loading

    seen = []
    real_loader, real_tokenizer = model_loading.base_loader, AutoTokenizer.from_pretrained

    def loader(method, model_type):
        function = real_loader(method, model_type)

        def recording(path, **kwargs):
            seen.append(("model", kwargs.get("trust_remote_code", False), kwargs.get("use_safetensors")))
            return function(path, **kwargs)

        return recording

    def tokenizer(path, **kwargs):
        seen.append(("tokenizer", kwargs.get("trust_remote_code", False), None))
        return real_tokenizer(path, **kwargs)

    monkeypatch.setattr(model_loading, "base_loader", loader)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", tokenizer)
    return seen


def _with_recorded_remote_code(run_dir: str, tmp_path) -> str:
    copy = shutil.copytree(run_dir, tmp_path / os.path.basename(run_dir))
    results = json.loads((copy / "results.json").read_text())
    results["run_info"]["config"]["model"]["trust_remote_code"] = True
    (copy / "results.json").write_text(json.dumps(results))
    return str(copy)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_inference_passes_the_recorded_trust_remote_code(trained_runs, tmp_path, recorded_calls, capsys, method):
    import torch

    inference.load_run(trained_runs[method], torch.device("cpu"), trust_remote_code=True)  # not recorded: off
    assert recorded_calls and all(trust is False for _, trust, _ in recorded_calls)
    assert {kind for kind, _, _ in recorded_calls} == {"model", "tokenizer"}
    if method == "full":  # the whole model comes from model/: safetensors only
        assert [s for kind, _, s in recorded_calls if kind == "model"] == [True]

    run_dir = _with_recorded_remote_code(trained_runs[method], tmp_path)
    recorded_calls.clear()
    with pytest.raises(inference.RunError, match="--trust_remote_code"):
        inference.load_run(run_dir, torch.device("cpu"))
    assert not recorded_calls  # refused before anything was loaded
    assert inference.main(["--run", run_dir, "hello"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was trained with --trust_remote_code" in err[0]

    assert inference.main(["--run", run_dir, "--trust_remote_code", "hello"]) == 0  # the user agrees
    assert recorded_calls and all(trust is True for _, trust, _ in recorded_calls)


def _malicious_pickle(marker) -> bytes:
    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    return pickle.dumps({"weight": Payload()})


@pytest.mark.parametrize("method, planted, remove", [
    ("full", "pytorch_model.bin", "model.safetensors"),
    ("full", "training_args.bin", None),
    ("lora", "adapter_model.bin", "adapter_model.safetensors"),
    ("prefix", "sub/optimizer.pt", None),
])
def test_pickled_files_in_a_model_folder_are_refused_unopened(trained_runs, tmp_path, capsys, method, planted,
                                                              remove):
    run_dir = shutil.copytree(trained_runs[method], tmp_path / "run")
    marker = tmp_path / "code_ran"
    target = run_dir / "model" / planted
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(_malicious_pickle(marker))
    if remove:
        os.remove(run_dir / "model" / remove)
    assert inference.main(["--run", str(run_dir), "hello"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pickle-based files" in err[0] and planted in err[0] and "safetensors" in err[0]
    assert not marker.exists()


def test_a_model_loader_named_by_a_results_file_is_never_imported(trained_runs, tmp_path, capsys, monkeypatch):
    """results.json is data: the model loads through its method's registry entry, whatever loader the file names,
    and the name it gives is never imported."""
    import importlib
    import sys

    import inference

    run_dir = shutil.copytree(trained_runs["lora"], tmp_path / "run")
    results = json.loads((run_dir / "results.json").read_text())
    results["run_info"]["model_loader"] = "planted_module:run_me"
    (run_dir / "results.json").write_text(json.dumps(results))
    (tmp_path / "planted_module.py").write_text("raise SystemExit('planted code ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = []
    real_import = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name) or real_import(name, *a))
    assert inference.main(["--run", str(run_dir), "hello"]) == 0
    assert "hello" in capsys.readouterr().out
    assert "planted_module" not in imported and "planted_module" not in sys.modules

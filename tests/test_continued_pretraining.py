"""Continued pre-training (phase 1): MLM training on unlabelled text, measured, and saved so that fine-tuning
loads it as it would a pretrained encoder."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import config
import utils
from ftbench.continued_pretraining import mlm_pretrain, read_text_file

# Short texts repeated: a tiny model can learn to fill their masks within a few dozen steps.
TEXTS = [
    "the movie was great and the acting was wonderful",
    "the food was cold and the service was slow",
    "what a boring film , i fell asleep",
    "i love this phone , the battery lasts all day",
] * 8

MLM_ARGS = ["--mlm_max_steps", "30", "--per_device_train_batch_size", "8", "--logging_steps", "5",
            "--mlm_learning_rate", "5e-3", "--warmup_ratio", "0", "--device", "cpu"]


def _pretrain(model_path: str, tmp_path, extra=()):
    run_config = config.parse_args("full", ["--model_name_or_path", model_path] + MLM_ARGS + list(extra))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    out_dir = str(tmp_path / "pretrained_backbone")
    log_path = str(tmp_path / "training_log.txt")
    info = mlm_pretrain(run_config, model_path, tokenizer, TEXTS, out_dir, torch.device("cpu"), log_path)
    return run_config, info, out_dir, log_path


@pytest.fixture(scope="module")
def bert_pretrained(tiny_bert, tmp_path_factory):
    return _pretrain(tiny_bert, tmp_path_factory.mktemp("mlm_bert"))


def test_mlm_loss_falls_and_is_measured(bert_pretrained):
    run_config, info, out_dir, log_path = bert_pretrained
    losses = [entry["loss"] for entry in info["train_loss_log"]]
    assert [entry["step"] for entry in info["train_loss_log"]] == [5, 10, 15, 20, 25, 30]
    # Observed: about 10.3 (chance over the 30522-token vocabulary) falling to about 6.
    assert losses[-1] < losses[0] - 2.0, losses
    assert info["final_train_loss"] == losses[-1]

    assert info["global_steps"] == 30
    assert info["epochs"] == pytest.approx(30 / 4)  # 32 texts in batches of 8
    assert info["train_samples"] == 30 * 8
    assert info["train_tokens"] > info["train_samples"] * 5  # every text is at least 7 tokens long
    assert info["train_time_s"] > 0
    assert info["train_samples_per_s"] == pytest.approx(info["train_samples"] / info["train_time_s"], rel=1e-3)
    assert info["train_tokens_per_s"] == pytest.approx(info["train_tokens"] / info["train_time_s"], rel=1e-3)
    assert info["memory"]["peak_rss_mib"] > 0
    assert info["num_texts"] == len(TEXTS)
    assert info["learning_rate"] == 5e-3 and info["mlm_probability"] == 0.15
    # The tiny BERT is a plain BertModel, as a sentence-embedding checkpoint is: its MLM head starts random.
    assert info["mlm_head_newly_initialised"] and all(name.startswith("cls.")
                                                      for name in info["mlm_head_newly_initialised"])
    assert info["saved_to"] == out_dir
    assert info["weights_kept_pretrained"] == ["pooler.dense.bias", "pooler.dense.weight"]

    log = open(log_path, encoding="utf-8").read()
    assert "continued pre-training: MLM on 32 texts (training split), budget 30 steps" in log
    assert "continued pre-training done: 30 steps" in log
    assert "val_loss" not in log  # the MLM table, not the fine-tuning table's header
    # Nothing but the saved backbone and the log is left beside it (the Trainer's scratch folder is gone).
    assert sorted(os.listdir(os.path.dirname(out_dir))) == ["pretrained_backbone", "training_log.txt"]


def test_saved_backbone_loads_for_fine_tuning(bert_pretrained, tiny_bert):
    _, _, out_dir, _ = bert_pretrained
    model, loading = AutoModelForSequenceClassification.from_pretrained(out_dir, num_labels=3,
                                                                        output_loading_info=True)
    assert sorted(loading["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert not loading["unexpected_keys"] and not loading["mismatched_keys"]
    AutoTokenizer.from_pretrained(out_dir)

    original = AutoModel.from_pretrained(tiny_bert).state_dict()
    trained = model.bert.state_dict()
    assert set(trained) == set(original)
    for name in ("pooler.dense.weight", "pooler.dense.bias"):
        assert torch.equal(trained[name], original[name]), name
    changed = [name for name in original if not name.startswith("pooler.")
               and not torch.equal(trained[name], original[name])]
    # Every layer of the encoder trained (embeddings, attention, feed-forward, LayerNorms).
    assert "embeddings.word_embeddings.weight" in changed
    assert "encoder.layer.1.output.dense.weight" in changed
    assert "encoder.layer.0.attention.self.query.weight" in changed


def test_distilbert(tiny_distilbert, tmp_path):
    _, info, out_dir, _ = _pretrain(tiny_distilbert, tmp_path, ["--mlm_max_steps", "4", "--logging_steps", "2"])
    assert info["global_steps"] == 4 and info["train_samples"] == 32
    assert info["weights_kept_pretrained"] == []  # DistilBertModel has no pooler
    assert info["mlm_head_newly_initialised"]
    model, loading = AutoModelForSequenceClassification.from_pretrained(out_dir, num_labels=2,
                                                                        output_loading_info=True)
    assert {key.rsplit(".", 1)[0] for key in loading["missing_keys"]} == {"pre_classifier", "classifier"}
    assert not loading["unexpected_keys"]
    original = AutoModel.from_pretrained(tiny_distilbert).state_dict()
    assert not torch.equal(model.distilbert.state_dict()["embeddings.word_embeddings.weight"],
                           original["embeddings.word_embeddings.weight"])


def test_epoch_budget(tiny_distilbert, tmp_path):
    _, info, _, _ = _pretrain(tiny_distilbert, tmp_path, ["--mlm_max_steps", "-1", "--mlm_epochs", "0.5"])
    assert info["global_steps"] == 2 and info["epochs"] == pytest.approx(0.5)
    assert info["final_train_loss"] is not None  # the last step is always logged


def test_read_text_file(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("\ufefffirst text\n\n   \n  second text  \nthird\n", encoding="utf-8")
    assert read_text_file(str(good)) == ["first text", "second text", "third"]

    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\t\n\n", encoding="utf-8")
    with pytest.raises(utils.DataError, match="empty.txt.*holds no text"):
        read_text_file(str(empty))

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(utils.DataError, match="latin1.txt.*not UTF-8"):
        read_text_file(str(latin1))

    with pytest.raises(utils.DataError, match="missing.txt"):
        read_text_file(str(tmp_path / "missing.txt"))

"""inference.py: reloads every method's run, reproduces its recorded results, and refuses bad input."""

import io
import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import inference


@pytest.mark.parametrize("method", ["full", "lora", "prefix"])
def test_reload_reproduces_recorded_test_predictions(trained_runs, method, capsys):
    assert inference.main(["--run", trained_runs[method], "--verify"]) == 0
    out = capsys.readouterr().out
    recorded = json.load(open(os.path.join(trained_runs[method], "results.json")))["train_info"]["test"]
    assert f"verify passed: test accuracy {recorded['accuracy']:.4f} (recorded {recorded['accuracy']:.4f})" in out
    assert "predictions agree on 100.00%" in out


def test_verify_catches_a_head_that_did_not_survive_reloading(trained_runs, tmp_path, capsys):
    """The known peft pitfall: an adapter reloaded with a random head. Replace the saved head by other
    values and verify must fail."""
    run_dir = shutil.copytree(trained_runs["lora"], tmp_path / "run")
    weights_path = run_dir / "model" / "adapter_model.safetensors"
    weights = load_file(weights_path)
    head_keys = [k for k in weights if "classifier" in k]
    assert head_keys
    torch.manual_seed(1)
    for key in head_keys:
        weights[key] = torch.randn_like(weights[key]) * 5
    save_file(weights, weights_path)
    assert inference.main(["--run", str(run_dir), "--verify"]) == 1
    assert "verify FAILED" in capsys.readouterr().out


def test_sentences_from_arguments_file_and_stdin(trained_runs, tmp_path, monkeypatch, capsys):
    run = trained_runs["prefix"]
    assert inference.main(["--run", run, "a calm flight", "the worst delay ever"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("a calm flight")
    label, probability = lines[0].split()[:2]
    assert label in ("negative", "neutral", "positive") and 1 / 3 <= float(probability) <= 1

    sentences = tmp_path / "s.txt"
    sentences.write_text("one\n\ntwo\nthree\n")
    assert inference.main(["--run", run, "--file", str(sentences), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["text"] for r in rows] == ["one", "two", "three"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)

    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    assert inference.main(["--run", run, "-"]) == 0
    assert capsys.readouterr().out.strip().endswith("from stdin")

    assert inference.main(["--run", run]) == 0  # built-in examples
    assert len(capsys.readouterr().out.strip().splitlines()) == len(inference.EXAMPLES)


def test_same_probabilities_alone_or_in_a_padded_batch(trained_runs):
    model, tokenizer, _ = inference.load_run(trained_runs["lora"], torch.device("cpu"))
    texts = ["short one", "a much longer sentence that forces padding on the short one beside it"]
    together = inference.predict(model, tokenizer, texts, 128)
    alone = inference.predict(model, tokenizer, texts[:1], 128)
    assert together[0] == pytest.approx(alone[0], abs=1e-5)


def test_newest_completed_run_is_the_default(trained_runs, capsys):
    assert inference.main(["--results_dir", trained_runs["output_dir"], "hello"]) == 0
    assert "prefix" in capsys.readouterr().err  # trained last by the fixture
    assert inference.main(["--results_dir", trained_runs["output_dir"], "--method", "full", "hello"]) == 0
    assert "full / " in capsys.readouterr().err


@pytest.mark.parametrize("args, fragment", [
    (["--run", "no-such-run"], "'no-such-run' is not a run folder"),
    (["--results_dir", "/nonexistent"], "no completed run with a saved model in /nonexistent/runs"),
    (["--method", "bitfit"], "no completed run with a saved model"),
    (["--file", "/no/file.txt"], "--file '/no/file.txt' does not exist"),
    (["--batch_size", "0"], "--batch_size must be at least 1"),
])
def test_bad_input(trained_runs, capsys, args, fragment):
    if "--results_dir" not in args:
        args = args + ["--results_dir", trained_runs["output_dir"]]
    assert inference.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_run_without_model(trained_runs, tmp_path, capsys):
    run_dir = shutil.copytree(trained_runs["full"], tmp_path / "run")
    shutil.rmtree(run_dir / "model")
    assert inference.main(["--run", str(run_dir)]) == 2
    assert "has no saved model" in capsys.readouterr().err

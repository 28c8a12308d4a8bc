"""inference.py: reloads every method's run, reproduces its recorded results, and refuses bad input."""

import io
import json
import math
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import inference
from ftbench import inference_benchmark


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


# --benchmark: small counts keep each call to a fraction of a second on the tiny BERT.
FAST = ["--benchmark", "--benchmark_warmup", "1", "--benchmark_iterations", "3", "--benchmark_batches", "2",
        "--benchmark_batch_size", "8"]


def _numbers(figures: dict) -> list[float]:
    return [v for v in figures.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _run_copy(trained_runs, method, tmp_path):
    """The benchmark writes into the run folder: work on a copy so other tests see the runs as trained."""
    return str(shutil.copytree(trained_runs[method], tmp_path / os.path.basename(trained_runs[method])))


@pytest.mark.parametrize("method, variants", [("full", ["as_loaded"]), ("lora", ["unmerged", "merged"]),
                                              ("prefix", ["as_loaded"])])
def test_benchmark_writes_figures_next_to_the_run(trained_runs, tmp_path, capsys, method, variants):
    run = _run_copy(trained_runs, method, tmp_path)
    assert inference.main(["--run", run] + FAST) == 0
    out = capsys.readouterr().out
    record = json.load(open(os.path.join(run, "inference_benchmark.json")))
    assert list(record["variants"]) == variants
    for name, variant in record["variants"].items():
        assert name in out
        latency, throughput = variant["latency"], variant["throughput"]
        numbers = _numbers(latency) + _numbers(throughput)
        assert len(numbers) == 13 and all(math.isfinite(x) and x > 0 for x in numbers)
        assert latency["latency_ms_p90"] >= latency["latency_ms_median"] >= latency["latency_ms_min"]
        assert latency["batch_size"] == 1 and latency["num_timed_iterations"] == 3
        assert throughput["batch_size"] == 8 and throughput["num_timed_iterations"] == 2
        assert latency["num_warmup_iterations"] == throughput["num_warmup_iterations"] == 1
        assert throughput["throughput_samples_per_s"] == pytest.approx(8 * 1000 / throughput["batch_ms_median"],
                                                                        rel=0.5)
    assert record["device"] == "cpu" and record["torch_threads"] == torch.get_num_threads()
    assert record["versions"]["torch"] == torch.__version__ and record["cpu"]
    assert record["run_id"] == os.path.basename(run)
    # The built-in examples, with their real tokenised lengths; the batch is filled with them in order.
    inputs = record["inputs"]
    assert inputs["sentences"] == inference.EXAMPLES and len(inputs["token_lengths"]) == len(inference.EXAMPLES)
    assert all(n > 2 for n in inputs["token_lengths"])
    assert inputs["batch"]["padded_length"] == max(inputs["token_lengths"])
    assert inputs["batch"]["real_tokens"] == sum(inputs["token_lengths"][i % 5] for i in range(8))
    if method == "lora":
        comparison = record["comparison"]
        assert comparison["max_abs_logit_diff"] < 1e-4 and comparison["predictions_agree"]
        assert comparison["latency_speedup_merged_over_unmerged"] == pytest.approx(
            record["variants"]["unmerged"]["latency"]["latency_ms_median"]
            / record["variants"]["merged"]["latency"]["latency_ms_median"])
        assert "merged over unmerged" in out
    else:
        assert record["comparison"] is None and not record["merge"]["measured"]
        assert ("virtual tokens" if method == "prefix" else "keeps no separate adapter") in record["merge"]["why_not"]
    assert not [f for f in os.listdir(run) if ".tmp" in f]


def test_benchmark_on_given_sentences_and_merged_model(trained_runs, tmp_path, capsys):
    run = _run_copy(trained_runs, "lora", tmp_path)
    model, tokenizer, _ = inference.load_run(run, torch.device("cpu"))
    model.merge_and_unload().save_pretrained(os.path.join(run, "merged_model"))  # as --export_merged saves it
    tokenizer.save_pretrained(os.path.join(run, "merged_model"))
    sentences = ["a calm flight", "the worst delay of my life, and nobody apologised"]
    assert inference.main(["--run", run, "--merged", "--json"] + FAST + sentences) == 0
    printed = json.loads(capsys.readouterr().out)
    record = json.load(open(os.path.join(run, "inference_benchmark.json")))
    assert printed == record
    assert record["loaded_from"] == "merged_model" and list(record["variants"]) == ["merged"]
    assert "already in the weights" in record["merge"]["why_not"]
    assert record["inputs"]["sentences"] == sentences
    assert record["inputs"]["token_lengths"] == [len(tokenizer(s)["input_ids"]) for s in sentences]


@pytest.mark.parametrize("args, fragment", [
    (["--benchmark_iterations", "0"], "--benchmark_iterations must be at least 1, got 0"),
    (["--benchmark_batches", "-2"], "--benchmark_batches must be at least 1, got -2"),
    (["--benchmark_warmup", "0"], "--benchmark_warmup must be at least 1, got 0"),
    (["--benchmark_batch_size", "0"], "--benchmark_batch_size must be at least 1, got 0"),
])
def test_benchmark_bad_counts(trained_runs, tmp_path, capsys, args, fragment):
    run = _run_copy(trained_runs, "lora", tmp_path)
    before = sorted(os.listdir(run))
    assert inference.main(["--run", run, "--benchmark"] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
    assert sorted(os.listdir(run)) == before


def test_verify_then_benchmark(trained_runs, tmp_path, capsys):
    run = _run_copy(trained_runs, "prefix", tmp_path)
    assert inference.main(["--run", run, "--verify"] + FAST) == 0
    out = capsys.readouterr().out
    assert "verify passed" in out and "as_loaded" in out
    assert os.path.isfile(os.path.join(run, "inference_benchmark.json"))


def test_benchmark_bad_run_and_failure_write_nothing(trained_runs, tmp_path, capsys, monkeypatch):
    assert inference.main(["--run", str(tmp_path / "no-such-run"), "--benchmark"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a run folder" in err[0]
    assert not os.path.exists(tmp_path / "no-such-run")

    run = _run_copy(trained_runs, "lora", tmp_path)
    before = sorted(os.listdir(run))

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(inference_benchmark, "measure", fail)
    with pytest.raises(RuntimeError):
        inference.main(["--run", run] + FAST)
    assert sorted(os.listdir(run)) == before


# Odd input: every text gets an answer (valid probabilities), in order, and the exit status is 0.
LONG = "word " * 20000  # 100,000 characters, 20,002 tokens: far beyond max_seq_length (128)
ODD = {
    "empty": "",
    "whitespace": " \t  \n ",
    "nul": "\x00",
    "control": "\x1b[31mred alert\x1b[0m\r\x07 and\ta tab",
    "invisible": "zero\u200bwidth \u202eevil\u202c \u200fmarks\u200e",
    "emoji": "😀🎉👍🏽 great 🇫🇷",
    "long": LONG,
    "long_word": "x" * 100_000,
    "surrogate": "bad \ud800 byte \udcff",
    "plain": "a calm flight",
}
NO_TEXT = "no text to classify"


def _valid(rows) -> bool:
    rows = torch.as_tensor(rows)
    return bool(torch.isfinite(rows).all() and (rows >= 0).all()
                and torch.allclose(rows.sum(-1), torch.ones(len(rows), dtype=rows.dtype), atol=1e-5))


def test_odd_texts_through_the_python_api(trained_runs):
    model, tokenizer, _ = inference.load_run(trained_runs["lora"], torch.device("cpu"))
    texts = list(ODD.values())
    together = inference.predict(model, tokenizer, texts, 128, batch_size=4)  # batches mixing them
    assert together.shape == (len(texts), 3) and _valid(together)
    for i, text in enumerate(texts):
        assert inference.predict(model, tokenizer, [text], 128)[0] == pytest.approx(together[i], abs=1e-5)
    # Truncation: the model sees the first 128 tokens ([CLS] + 126 words + [SEP]), as in training.
    assert together[texts.index(LONG)] == pytest.approx(
        inference.predict(model, tokenizer, ["word " * 126], 128)[0], abs=1e-6)
    assert inference.predict(model, tokenizer, [], 128).shape == (0, 3)

    about = dict(zip(ODD, inference.describe_texts(tokenizer, texts, 128)))
    assert about["long"]["truncated"] and about["long"]["num_tokens"] == 20002
    assert about["long"]["notes"] == ["truncated: 20002 tokens, the first 128 used"]
    assert not about["long_word"]["truncated"]  # one over-long word is one [UNK]
    for name in ("empty", "whitespace", "nul"):
        assert about[name]["num_tokens"] == 2 and len(about[name]["notes"]) == 1
        assert NO_TEXT in about[name]["notes"][0]
    assert about["surrogate"]["notes"] == [
        "2 invalid characters (lone surrogate, e.g. an undecodable byte) replaced by U+FFFD"]
    for name in ("control", "invisible", "emoji", "plain"):
        assert about[name]["notes"] == [] and not about[name]["truncated"], name
    assert inference.clean_text("bad \ud800")[0] == "bad \ufffd"
    with pytest.raises(TypeError):
        inference.clean_text(None)


def test_odd_texts_in_process_json(trained_runs, capsys):
    assert inference.main(["--run", trained_runs["full"], "--json"] + list(ODD.values())) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert len(rows) == len(ODD)
    assert [r["text"] for r in rows] == [inference.clean_text(t)[0] for t in ODD.values()]
    assert _valid([list(r["probabilities"].values()) for r in rows])
    assert all(r["label"] == max(r["probabilities"], key=r["probabilities"].get) for r in rows)
    by_name = dict(zip(ODD, rows))
    assert by_name["long"]["truncated"] is True and by_name["long"]["num_tokens"] == 20002
    assert by_name["plain"] == {**by_name["plain"], "truncated": False, "notes": [], "num_tokens": 5}
    assert NO_TEXT in by_name["empty"]["notes"][0] and "U+FFFD" in by_name["surrogate"]["notes"][0]
    assert "\ud800" not in captured.out and captured.err.count("note:") == 0  # notes are in the JSON


def _cli(args, stdin: bytes = b""):
    import subprocess
    import sys

    from conftest import ROOT

    return subprocess.run([sys.executable, "inference.py"] + args, cwd=ROOT, input=stdin, capture_output=True,
                          timeout=300, check=False)


@pytest.mark.slow  # processes of their own
def test_odd_texts_on_the_command_line(trained_runs):
    """The real CLI: odd texts as arguments (an undecodable byte among them) and on standard input (NUL, CR LF,
    an invalid byte, blank lines), JSON out."""
    argv = [t for t in ODD.values() if "\x00" not in t and "\ud800" not in t] + [b"invalid \xff byte"]
    stdin = b"\xef\xbb\xbfwith a BOM\r\nnul \x00 inside\n\n   \nbad \xfe\xff bytes\r\n\xf0\x9f\x98\x80\n"
    done = _cli(["--run", trained_runs["prefix"], "--json", "-"] + argv, stdin)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in done.stdout.decode("utf-8").strip().splitlines()]
    texts = [r["text"] for r in rows]
    assert len(rows) == len(argv) + 4 and texts[-4:] == ["with a BOM", "nul \x00 inside", "bad \ufffd\ufffd bytes",
                                                         "😀"]
    assert texts[len(argv) - 1] == "invalid \ufffd byte" and "U+FFFD" in rows[len(argv) - 1]["notes"][0]
    assert _valid([list(r["probabilities"].values()) for r in rows])
    long = rows[argv.index(LONG)]
    assert long["truncated"] and long["num_tokens"] == 20002 and len(long["text"]) == 100_000


def test_odd_texts_in_the_table_are_shown_safely(trained_runs, monkeypatch, capsys):
    """The table on a terminal that only takes ASCII: no raw escape sequences or bidi overrides reach it, a
    long text is shortened, notes go to standard error, one line per text."""
    terminal = io.TextIOWrapper(io.BytesIO(), encoding="ascii", newline="\n")
    monkeypatch.setattr("sys.stdout", terminal)
    argv = [ODD[k] for k in ("empty", "control", "invisible", "emoji", "long", "surrogate", "plain")]
    assert inference.main(["--run", trained_runs["lora"]] + argv) == 0
    terminal.flush()
    out, err = terminal.buffer.getvalue().decode("ascii"), capsys.readouterr().err
    lines = out.splitlines()
    assert len(lines) == len(argv) and all(line.split()[0] in ("negative", "neutral", "positive") for line in lines)
    assert all(ord(ch) >= 32 for ch in out.replace("\n", ""))
    assert lines[1].endswith("\\x1b[31mred alert\\x1b[0m\\r\\x07 and\\ta tab")
    assert lines[2].endswith("zero\\u200bwidth \\u202eevil\\u202c \\u200fmarks\\u200e")
    assert "\\U0001f600" in lines[3]  # emoji the terminal cannot show, escaped rather than a crash
    assert lines[4].endswith("... (100,000 characters)") and len(lines[4]) < 300
    assert lines[5].endswith("bad \\ufffd byte \\ufffd")
    assert "note: text 1: no text to classify" in err and "note: text 5: truncated: 20002 tokens" in err
    assert "note: text 6: 2 invalid characters" in err and "note: text 7" not in err


def test_empty_sources_print_nothing(trained_runs, tmp_path, monkeypatch, capsys):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\t\n")
    assert inference.main(["--run", trained_runs["full"], "--file", str(blank)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no sentences to classify: --file" in captured.err
    monkeypatch.setattr("sys.stdin", io.StringIO("\n\n"))
    assert inference.main(["--run", trained_runs["full"], "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "standard input had no non-blank line" in captured.err


def test_benchmark_with_odd_texts(trained_runs, tmp_path, capsys):
    run = _run_copy(trained_runs, "full", tmp_path)
    assert inference.main(["--run", run] + FAST + [ODD[k] for k in ("empty", "surrogate", "long", "emoji")]) == 0
    record = json.load(open(os.path.join(run, "inference_benchmark.json")))
    assert record["inputs"]["sentences"][1] == "bad \ufffd byte \ufffd"
    assert record["inputs"]["token_lengths"][0] == 2 and record["inputs"]["token_lengths"][2] == 128

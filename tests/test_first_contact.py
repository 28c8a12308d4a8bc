"""The README's main job, run as a new user runs it: its commands, read from the README, on the real model
and data. The trained model must clear the majority-class baseline by a wide margin, and the README's
inference example must come out as the README says."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT

# What the README's inference example says the three sentences are (in its "Set up and run" section).
EXPECTED_LABELS = ["positive", "negative", "neutral"]


def readme_commands() -> dict[str, list[str]]:
    """The first `python train_lora.py` and `python inference.py` lines of the README's set-up block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Set up and run"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["python"] and words[1] not in commands:
            commands[words[1]] = words[2:]
    return commands


@pytest.mark.slow  # the real model on 2,000 tweets for three epochs: two to three minutes on two cores
def test_the_readme_main_job_trains_a_model_that_gets_the_readme_example_right(tmp_path):
    commands = readme_commands()
    train = subprocess.run([sys.executable, "train_lora.py", *commands["train_lora.py"], "--output_dir",
                            str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert train.returncode == 0, train.stderr[-3000:]
    (results_file,) = tmp_path.glob("runs/*/results.json")
    test = json.loads(results_file.read_text())["train_info"]["test"]
    baseline = test["majority_baseline"]
    assert (baseline["label"], round(baseline["accuracy"], 3)) == ("negative", 0.426)
    assert test["accuracy"] > baseline["accuracy"] + 0.2 and test["f1_macro"] > baseline["f1_macro"] + 0.4, test
    summary = (f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['f1_macro']:.4f} (always 'negative': "
               f"{baseline['accuracy']:.4f}, {baseline['f1_macro']:.4f})")
    assert summary in train.stdout + train.stderr

    infer = subprocess.run([sys.executable, "inference.py", *commands["inference.py"], "--results_dir",
                            str(tmp_path), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert infer.returncode == 0, infer.stderr[-3000:]
    answers = [json.loads(line) for line in infer.stdout.splitlines() if line.startswith("{")]
    assert [a["text"] for a in answers] == commands["inference.py"]
    assert [a["label"] for a in answers] == EXPECTED_LABELS, answers

"""No script's stderr holds a line the suite did not write, on any CPU.

bitsandbytes warns at import on CPUs with AVX512-BF16 only, so a test that merely reads stderr would pass on
a CPU without it and fail on one with it. These tests check the mechanism instead, which is the same on every
CPU: when bitsandbytes is first imported, the logger it warns through must already be set to ERROR."""

from __future__ import annotations

import glob
import json
import logging
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT
from ftbench.hub_offline import PROXY_VARIABLES, hub_reachable

ENTRY_POINTS = sorted([*(p.name for p in ROOT.glob("train_*.py")), "bench_speed.py", "benchmark.py",
                       "inference.py", "plot_results.py", "report.py", "run_status.py", "utils.py"])

# Runs a script as `python SCRIPT ARGS...` would, recording the warning logger's level at the moment
# bitsandbytes is first looked for (before any of its code runs).
WATCH = r"""
import json, logging, runpy, sys
seen = {}
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "bitsandbytes" and "level" not in seen:
            seen["level"] = logging.getLogger("bitsandbytes.backends.cpu.ops").getEffectiveLevel()
        return None
sys.meta_path.insert(0, Watch())
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("WATCH " + json.dumps(seen))
"""


def watched(script: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, "-c", WATCH, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    line = [line for line in done.stdout.splitlines() if line.startswith("WATCH ")][-1]
    return done, json.loads(line.removeprefix("WATCH "))


def test_every_entry_point_is_listed():
    with_main = {path.split("/")[-1] for path in glob.glob(str(ROOT / "*.py"))
                 if 'if __name__ == "__main__":' in open(path, encoding="utf-8").read()}
    assert with_main == set(ENTRY_POINTS)


@pytest.mark.slow  # a process per script: about a minute on two cores
def test_help_of_every_script_writes_nothing_to_stderr_and_silences_bitsandbytes_first():
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip(ENTRY_POINTS, pool.map(lambda script: watched(script, "--help"), ENTRY_POINTS)))
    for script, (done, seen) in outcomes.items():
        assert done.returncode == 0, f"{script}: {done.stderr[-500:]}"
        assert done.stderr == "", f"{script} --help wrote to stderr: {done.stderr[:300]!r}"
        assert "usage:" in done.stdout, script
        if "level" in seen:  # imported at all: then only after its warning logger was silenced
            assert seen["level"] >= logging.ERROR, f"{script} imported bitsandbytes before silencing it"
    # The training scripts answer --help before importing peft (and so bitsandbytes); the training run below is
    # where their check is not vacuous.


@pytest.mark.slow
def test_a_training_run_writes_only_the_suites_lines_to_stderr(tiny_bert, tmp_path):
    done, seen = watched("train_lora.py", "--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path),
                         "--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert seen["level"] >= logging.ERROR
    # The progress bar is the suite's (ftbench.trainer.QuietProgress) and redraws itself with carriage returns.
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    foreign = [line for line in lines if not ("it/s]" in line or "s/it]" in line or "/2 [" in line)]
    assert foreign == [], foreign


def without_hub_settings(**extra: str) -> dict:
    """This environment less anything that decides how the Hub is reached, plus extra."""
    unset = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "FT_BENCH_DATA_DIR", *PROXY_VARIABLES)
    return {name: value for name, value in os.environ.items() if name not in unset} | extra


UNREACHABLE = "https://hub.invalid"  # RFC 6761: a .invalid name never resolves


def offline_decision(env: dict, first: str = "") -> tuple[bool, str | None]:
    probe = (f"{first}\nimport json, os; from ftbench.hub_offline import go_offline_if_hub_unreachable as go\n"
             "print(json.dumps([go(), os.environ.get('HF_HUB_OFFLINE')]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1000:]
    went, value = json.loads(done.stdout)
    return went, value


def test_an_unreachable_hub_sets_offline_mode_unless_the_user_or_a_proxy_decides():
    with socket.create_server(("127.0.0.1", 0)) as server:  # a reachable "Hub": it accepts connections
        local = f"http://127.0.0.1:{server.getsockname()[1]}"
        assert hub_reachable(local) and not hub_reachable(UNREACHABLE)
        assert offline_decision(without_hub_settings(HF_ENDPOINT=local)) == (False, None)
    assert offline_decision(without_hub_settings(HF_ENDPOINT=UNREACHABLE)) == (True, "1")
    # Too late once the Hub's library has read the variable: then nothing is decided.
    assert offline_decision(without_hub_settings(HF_ENDPOINT=UNREACHABLE), "import huggingface_hub") == (False, None)
    assert offline_decision(without_hub_settings(HF_ENDPOINT=UNREACHABLE, HF_HUB_OFFLINE="0")) == (False, "0")
    assert offline_decision(without_hub_settings(HF_ENDPOINT=UNREACHABLE, HTTPS_PROXY="http://proxy:3128")) == (
        False, None)


@pytest.mark.slow  # two processes
def test_an_unreachable_hub_is_one_line_at_once_not_five_retries(tmp_path):
    # huggingface_hub retries an unreachable Hub five times, a warning line each, 23 s in all; offline mode does not.
    env = without_hub_settings(HF_ENDPOINT=UNREACHABLE)
    for args, expected in [
        (["--dataset", "sst2"], "error: could not load 'nyu-mll/glue' from the Hugging Face Hub (ConnectionError); "
                                "offline, pass --data_dir (or set FT_BENCH_DATA_DIR) to a folder with the original "
                                "files"),
        (["--model_name_or_path", "bert-base-uncased"], "error: cannot load model 'bert-base-uncased' (Hub id "
                                                        "bert-base-uncased)")]:
        done = subprocess.run([sys.executable, "train_full.py", *args, "--output_dir", str(tmp_path)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(expected), done.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []

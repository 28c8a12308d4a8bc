"""No script's stderr holds a line the suite did not write, on any CPU.

bitsandbytes warns at import on CPUs with AVX512-BF16 only, so a test that merely reads stderr would pass on
a CPU without it and fail on one with it. These tests check the mechanism instead, which is the same on every
CPU: when bitsandbytes is first imported, the logger it warns through must already be set to ERROR."""

from __future__ import annotations

import glob
import json
import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT

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
    # The training scripts import peft, which imports bitsandbytes: the check above was not vacuous for them.
    assert all("level" in outcomes[script][1] for script in ENTRY_POINTS if script.startswith("train_"))


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

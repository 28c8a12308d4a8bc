"""Runs that are interrupted, killed or go wrong: real tiny trainings on a slice of real SST-2, stopped by
real signals at chosen and at random moments, then resumed; their results must equal an uninterrupted
run's exactly (CPU), and no file may ever claim a result that was not reached."""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

import inference
import plot_results
import run_status
from conftest import ROOT, SHARED_DATA, needs_shared_data, train
from ftbench import run_store, runner

pytestmark = needs_shared_data

# 160 examples in batches of 16 for 2 epochs: 20 steps, evaluated (and checkpointed) at steps 5, 10, 15, 20.
BASE = ["--dataset", "sst2", "--data_dir", str(SHARED_DATA), "--max_train_samples", "160",
        "--max_eval_samples", "64", "--num_train_epochs", "2", "--per_device_train_batch_size", "16",
        "--logging_steps", "2", "--measure_mfu", "false"]
TOTAL_STEPS = 20
# The interruption points are drawn from a fixed seed, so that a run of the suite repeats the last one; set
# FTB_INTERRUPT_SEED to draw others. The seed is in every failure message that depends on it.
SEED = int(os.environ.get("FTB_INTERRUPT_SEED", "20240611"))
RNG = random.Random(SEED)
RANDOM_STEP = RNG.randint(1, TOTAL_STEPS - 1)
# The outside signal: a longer run (40 steps, a checkpoint after each), signalled a random delay (at most 0.3 s,
# about 5 steps here) after the checkpoint of a random early step is recorded. At least 32 steps are then still
# to come (about 2 s here, and more on a slower machine, which slows the run as much), so it lands mid-training.
OUTSIDE = BASE + ["--checkpoint_steps", "1"]
OUTSIDE[OUTSIDE.index("--max_train_samples") + 1] = "320"
OUTSIDE_TOTAL_STEPS = 40
OUTSIDE_STEP = RNG.randint(1, 8)
OUTSIDE_DELAY_S = RNG.uniform(0.0, 0.3)


def results_of(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "results.json")) as handle:
        return json.load(handle)


def only_run(output_dir) -> str:
    folders = glob.glob(os.path.join(str(output_dir), "runs", "*"))
    assert len(folders) == 1, folders
    return folders[0]


@pytest.fixture(scope="session")
def baselines(tiny_bert, tmp_path_factory):
    """Uninterrupted runs, made on first use: {(method, extra options, base options): run folder}."""
    made = {}

    def get(method: str, extra: tuple = (), base: tuple = tuple(BASE)) -> str:
        if (method, extra, base) not in made:
            output = tmp_path_factory.mktemp(f"baseline_{method}")
            assert train(method, ["--model_name_or_path", tiny_bert, "--output_dir", str(output)] + list(base)
                         + list(extra)) == 0
            made[(method, extra, base)] = only_run(output)
        return made[(method, extra, base)]
    return get


def assert_same_results(expected_dir: str, actual_dir: str, context: str) -> None:
    """Every metric of the two runs equal (times aside): evaluations, logged losses, test results and the
    per-example test predictions."""
    expected, actual = results_of(expected_dir)["train_info"], results_of(actual_dir)["train_info"]

    def untimed(entries):
        return [{k: v for k, v in e.items() if "time" not in k} for e in entries]
    assert untimed(actual["history"]) == untimed(expected["history"]), context
    assert untimed(actual["train_loss_log"]) == untimed(expected["train_loss_log"]), context
    assert untimed([actual["test"]]) == untimed([expected["test"]]), context
    assert actual["selection"] == expected["selection"], context
    for key in ("global_steps", "train_samples", "train_tokens", "train_padded_tokens"):
        assert actual[key] == expected[key], (key, context)
    with open(os.path.join(expected_dir, "test_predictions.json")) as a, \
            open(os.path.join(actual_dir, "test_predictions.json")) as b:
        assert json.load(a) == json.load(b), context


def run_interrupted(tiny_bert, output_dir, method: str, when: str, step: int, signals: list[str],
                    extra: tuple = ()) -> subprocess.CompletedProcess:
    command = [sys.executable, os.path.join(ROOT, "tests", "interrupt_run.py"), method, when, str(step), *signals,
               "--", "--model_name_or_path", tiny_bert, "--output_dir", str(output_dir)] + BASE + list(extra)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_nothing_claims_completion(run_dir: str) -> dict:
    results = results_of(run_dir)  # parses: never truncated
    assert results["run_info"]["status"] != "completed"
    assert "test" not in results["train_info"]
    outputs = [name for name in ("test_predictions.json", "model", "merged_model")
               if os.path.exists(os.path.join(run_dir, name))]
    if results["run_info"]["status"] == "running":
        # kill -9 while finishing: outputs written, results.json not yet completed. They are no result:
        # inference refuses the run, and a resume writes them again.
        assert run_store.effective_status(run_dir, results["run_info"]) == "unfinished"
        if "model" in outputs:
            with pytest.raises(inference.RunError, match="did not complete"):
                inference.load_run(run_dir, torch.device("cpu"))
    else:  # the run recorded its own end: nothing that looks like a result is left
        assert outputs == [], outputs
    return results


# (method, when, step, signals, extra options): what each case shows
CASES = [
    # Ctrl-C at a random step: the run stops after that step with a checkpoint of it.
    ("full", "step", RANDOM_STEP, ["SIGINT"], ()),
    # SIGTERM (a scheduler, a pre-empted node) during the evaluation at the end of the first epoch.
    ("lora", "eval", 10, ["SIGTERM"], ()),
    # The very first step, before any evaluation or checkpoint; prefix tuning's virtual-token parameters.
    ("prefix", "step", 1, ["SIGINT"]),
    # A second Ctrl-C stops at once: resumed from the last checkpoint of the schedule (step 5), or the start.
    ("full", "step", 8, ["SIGINT", "SIGINT"], ()),
    # The data order without length grouping (the Trainer's seeded sampler) resumes exactly too.
    ("full", "step", 13, ["SIGINT"], ("--group_by_length", "false")),
    # Extra checkpoints every 3 steps: only the latest and the best are kept.
    ("full", "step", 17, ["SIGINT"], ("--checkpoint_steps", "3")),
]
CASES = [case if len(case) == 5 else (*case, ()) for case in CASES]


@pytest.mark.slow
@pytest.mark.parametrize("method,when,step,signals,extra", CASES,
                         ids=[f"{c[0]}-{c[1]}{c[2]}-{'+'.join(c[3])}{'-' + c[4][0] if c[4] else ''}" for c in CASES])
def test_interrupted_run_resumes_to_the_uninterrupted_result(tiny_bert, baselines, tmp_path, method, when, step,
                                                            signals, extra):
    context = f"{method} {when} {step} {signals} {extra} (FTB_INTERRUPT_SEED={SEED})"
    expected = baselines(method, extra)
    done = run_interrupted(tiny_bert, tmp_path, method, when, step, signals, extra)
    code = 128 + getattr(signal, signals[-1])
    assert done.returncode == code, (context, done.stderr[-2000:])
    run_dir = only_run(tmp_path)
    results = assert_nothing_claims_completion(run_dir)
    info = results["train_info"]
    assert results["run_info"]["status"] == "interrupted"
    assert "resume with: python train_" in results["run_info"]["error"]
    checkpoints = run_store.valid_checkpoints(run_dir)
    if len(signals) == 1:  # stopped after the step (a signal during evaluation: the next), with a checkpoint
        stop = step + 1 if when == "eval" else step
        assert info["stopped_at_step"] == stop and info["resume_from_step"] == stop, (context, info)
        assert checkpoints[-1][0] == stop
    else:  # stopped at once, mid-step: the last scheduled checkpoint is where it resumes
        assert info["resume_from_step"] == (checkpoints[-1][0] if checkpoints else 0) < step
    assert len(checkpoints) <= 2  # the latest and the best
    assert run_store.effective_status(run_dir, results["run_info"]) == "interrupted"
    assert info["wall_time_s"] > 0  # the interrupted process's, which the resumed run adds to its own

    assert train(method, ["--resume", run_dir]) == 0, context
    resumed = results_of(run_dir)
    assert resumed["run_info"]["status"] == "completed"
    assert [r["from_status"] for r in resumed["run_info"]["resumes"]] == ["interrupted"]
    wall, phases = resumed["train_info"]["wall_time_s"], resumed["train_info"]["wall_time_breakdown_s"]
    assert phases["earlier_processes"] == info["wall_time_s"] and run_store.wall_time(resumed) == (wall, True)
    assert abs(sum(phases.values()) - wall) <= 0.001 * len(phases)
    # Training and evaluation are this process's share: the evaluations after the checkpoint it resumed from.
    later = [e for e in resumed["train_info"]["history"] if e["step"] > info["resume_from_step"]]
    assert phases["evaluation"] == pytest.approx(sum(e["eval_time_s"] or 0.0 for e in later), abs=0.002)
    assert phases["training"] < resumed["train_info"]["train_time_s"] or info["resume_from_step"] == 0
    assert not os.path.exists(os.path.join(run_dir, "checkpoints"))
    assert_same_results(expected, run_dir, context)


@pytest.mark.slow
def test_sigkill_while_finishing_leaves_no_result(tiny_bert, baselines, tmp_path):
    """kill -9 after the test predictions and the model are written, before results.json says completed."""
    command = [sys.executable, "-c", "import os, signal, sys; sys.path[:0] = ['.', 'tests']; "
               "from ftbench import run_ending, runner; "
               "save = run_ending.write_json_atomic\n"
               "def write(path, payload):\n"
               "    if payload.get('run_info', {}).get('status') == 'completed':\n"
               "        os.kill(os.getpid(), signal.SIGKILL)\n"
               "    save(path, payload)\n"
               "run_ending.write_json_atomic = write\n"
               "sys.exit(runner.run('full', sys.argv[1:], 'train_full.py'))",
               "--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + BASE
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    run_dir = only_run(tmp_path)
    assert os.path.isdir(os.path.join(run_dir, "model"))  # saved just before the kill
    assert_nothing_claims_completion(run_dir)
    # the checkpoint of the last step is still there: the resume only selects, tests and saves again
    assert run_store.valid_checkpoints(run_dir)[-1][0] == TOTAL_STEPS
    assert train("full", ["--resume", run_dir]) == 0
    assert_same_results(baselines("full"), run_dir, "SIGKILL while finishing")


@pytest.mark.slow
def test_checkpoint_rotation_keeps_the_latest_and_the_best(tiny_bert, tmp_path):
    done = run_interrupted(tiny_bert, tmp_path, "full", "step", 19, ["SIGINT"], ("--checkpoint_steps", "2"))
    assert done.returncode == 130, done.stderr[-2000:]
    run_dir = only_run(tmp_path)
    kept = [step for step, _ in run_store.valid_checkpoints(run_dir)]
    history = results_of(run_dir)["train_info"]["history"]
    best = max(history, key=lambda e: e["val_accuracy"])["step"]  # first of equals, as the Trainer keeps it
    assert kept == sorted({best, 19}), (kept, history)
    assert os.listdir(os.path.join(run_dir, "checkpoints")) == [f"checkpoint-{s}" for s in kept] or \
        sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == sorted(f"checkpoint-{s}" for s in kept)
    for _, folder in run_store.valid_checkpoints(run_dir):
        files = os.listdir(folder)
        assert "model.safetensors" in files and "optimizer.pt" in files and "rng_state.pth" in files, files


@pytest.mark.slow
def test_sigkill_while_saving_leaves_no_claim_and_resumes(tiny_bert, baselines, tmp_path):
    """kill -9 halfway through writing the checkpoint of step 10: the half-written checkpoint is never used,
    results.json still parses and says running, the run is seen as unfinished, and it resumes from step 5."""
    done = run_interrupted(tiny_bert, tmp_path, "full", "save", 10, ["SIGKILL"])
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    run_dir = only_run(tmp_path)
    results = assert_nothing_claims_completion(run_dir)
    assert results["run_info"]["status"] == "running"
    assert run_store.effective_status(run_dir, results["run_info"]) == "unfinished"
    assert results["run_info"]["progress"]["last_checkpoint_step"] == 5
    assert os.path.isdir(os.path.join(run_dir, "checkpoints", "checkpoint-10"))  # the half-written one
    assert [s for s, _ in run_store.valid_checkpoints(run_dir)] == [5]
    # plot_results and run_status.py name it, with the command that resumes it
    runs = plot_results.load_runs(str(tmp_path))
    notes = plot_results.skip_notes(runs, [], [], plot_results.parse_args(["--results_dir", str(tmp_path)]))
    assert "1 unfinished" in notes[0] and f"--resume {run_dir}" in notes[0], notes
    listing = subprocess.run([sys.executable, "run_status.py", str(tmp_path)], cwd=ROOT, capture_output=True,
                             text=True)
    # Where it stopped is read from what the runner wrote (run_info.progress.last_checkpoint_step).
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout == (f"unfinished: {os.path.basename(run_dir)} (full, sst2), last checkpoint at step 5 of 20; "
                              f"resume: python train_full.py --resume {run_dir}  (continues from step 5)\n")

    assert train("full", ["--resume", "latest", "--output_dir", str(tmp_path)]) == 0
    resumed = results_of(run_dir)
    assert [r["from_status"] for r in resumed["run_info"]["resumes"]] == ["unfinished"]
    # The killed process recorded no wall time: the run's is a lower bound, adding the killed process's training.
    assert "earlier_processes" not in resumed["train_info"]["wall_time_breakdown_s"]
    wall, exact = run_store.wall_time(resumed)
    assert not exact and wall > resumed["train_info"]["wall_time_s"]
    assert not os.path.exists(os.path.join(run_dir, "checkpoints"))
    assert_same_results(baselines("full"), run_dir, "SIGKILL while saving step 10")


def last_checkpoint_step(output_dir) -> int | None:
    """The run's recorded progress: the step of its last complete checkpoint (None before the first)."""
    found = glob.glob(os.path.join(str(output_dir), "runs", "*", "results.json"))
    if not found:
        return None
    with open(found[0]) as handle:  # written atomically (rename): never half-written
        return (json.load(handle)["run_info"].get("progress") or {}).get("last_checkpoint_step")


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGKILL"])
def test_signal_from_outside_mid_training(tiny_bert, baselines, tmp_path, signame):
    """The plain script, signalled by another process a random moment after a random early checkpoint (both
    seeded): the signal lands mid-training, nothing claims completion, and the run resumes to the same result."""
    context = (f"{signame} {OUTSIDE_DELAY_S:.2f}s after the checkpoint of step {OUTSIDE_STEP} "
               f"(FTB_INTERRUPT_SEED={SEED})")
    command = [sys.executable, "train_full.py", "--model_name_or_path", tiny_bert, "--output_dir",
               str(tmp_path / "out")]
    with open(tmp_path / "stderr.txt", "w+") as stderr:  # a file, not a pipe that could fill and stall the run
        process = subprocess.Popen(command + OUTSIDE, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        try:
            deadline = time.time() + 240
            while process.poll() is None and time.time() < deadline:
                if (last_checkpoint_step(tmp_path / "out") or 0) >= OUTSIDE_STEP:
                    break
                time.sleep(0.01)
            time.sleep(OUTSIDE_DELAY_S)
            process.send_signal(getattr(signal, signame))
            process.wait(timeout=240)
        finally:
            process.kill()
        stderr.seek(0)
        errors = stderr.read()[-2000:]
    context += f"; exit {process.returncode}"
    run_dir = only_run(tmp_path / "out")
    results = assert_nothing_claims_completion(run_dir)
    # It landed mid-training: the run stopped (or was killed) after the step watched for and before the last.
    if signame == "SIGTERM":
        assert process.returncode == 143, (context, errors)
        assert results["run_info"]["status"] == "interrupted", context
        stopped = results["train_info"]["stopped_at_step"]
        assert OUTSIDE_STEP <= stopped < OUTSIDE_TOTAL_STEPS, (context, stopped)
        assert results["train_info"]["resume_from_step"] == stopped, context  # its checkpoint was written
    else:
        assert process.returncode == -signal.SIGKILL, (context, errors)
        assert results["run_info"]["status"] == "running", context
        assert run_store.effective_status(run_dir, results["run_info"]) == "unfinished", context
        assert OUTSIDE_STEP <= results["run_info"]["progress"]["last_checkpoint_step"] < OUTSIDE_TOTAL_STEPS, context
    assert train("full", ["--resume", run_dir]) == 0, context
    assert results["run_info"]["total_steps"] == OUTSIDE_TOTAL_STEPS
    assert_same_results(baselines("full", base=tuple(OUTSIDE)), run_dir, context)


@pytest.mark.slow
def test_resume_refuses_what_it_cannot_do(tiny_bert, baselines, tmp_path, capsys):
    completed = baselines("full")
    done = run_interrupted(tiny_bert, tmp_path / "out", "full", "step", 3, ["SIGINT"])
    assert done.returncode == 130
    interrupted = only_run(tmp_path / "out")
    capsys.readouterr()
    assert run_status.main([str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out == (f"interrupted: {os.path.basename(interrupted)} (full, sst2), stopped at step 3 "
                                       f"of 20; resume: python train_full.py --resume {interrupted}  (continues from "
                                       "step 3)\n")
    cases = [
        ("full", ["--resume", completed], "completed; there is nothing to resume"),
        ("lora", ["--resume", interrupted], "was trained with train_full.py; resume it with that script"),
        ("full", ["--resume", interrupted, "--learning_rate", "1e-3"], "drop the other options (--learning_rate"),
        ("full", ["--resume", str(tmp_path)], "is not a run folder"),
        ("full", ["--resume", "latest", "--output_dir", str(tmp_path / "none")], "no interrupted or unfinished"),
    ]
    for method, args, fragment in cases:
        assert train(method, args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], (args, err)
    # A run that is still alive (its lock held) is not resumed under it.
    lock = run_store.RunLock(interrupted)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               lock.path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        results = results_of(interrupted)
        results["run_info"]["status"] = "running"  # as a live run's file says
        run_store.write_json_atomic(os.path.join(interrupted, "results.json"), results)
        assert run_store.effective_status(interrupted, results["run_info"]) == "running"
        assert train("full", ["--resume", interrupted]) == 2
        assert "is still running" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert run_store.effective_status(interrupted, results["run_info"]) == "unfinished"


@pytest.mark.slow
def test_resume_refuses_changed_data(tiny_bert, tmp_path, capsys):
    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        data.joinpath(name).write_bytes((SHARED_DATA / "sst2" / name).read_bytes()[:40000])
    args = [a if a != str(SHARED_DATA) else str(tmp_path / "data") for a in BASE]
    command = [sys.executable, os.path.join(ROOT, "tests", "interrupt_run.py"), "full", "step", "4", "SIGINT", "--",
               "--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path / "out")] + args
    assert subprocess.run(command, cwd=ROOT, capture_output=True, timeout=300).returncode == 130
    run_dir = only_run(tmp_path / "out")
    with open(data / "train.tsv", "a") as handle:
        handle.write("a sentence added after the run started\t1\n")
    capsys.readouterr()
    assert train("full", ["--resume", run_dir]) == 2
    err = capsys.readouterr().err
    assert "the data differ from those run" in err and "files changed" in err, err
    assert results_of(run_dir)["run_info"]["status"] == "interrupted"  # untouched


@pytest.mark.slow
def test_unfinished_twin_is_pointed_out(tiny_bert, tmp_path, capsys):
    done = run_interrupted(tiny_bert, tmp_path, "full", "step", 2, ["SIGINT"])
    assert done.returncode == 130
    run_dir = only_run(tmp_path)
    capsys.readouterr()
    assert train("full", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + BASE
                 + ["--max_steps", "1"]) == 0
    assert "note: an" not in capsys.readouterr().err  # different settings
    assert train("full", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + BASE) == 0
    err = capsys.readouterr().err
    assert f"note: an interrupted run with the same settings is in {run_dir}" in err
    assert f"--resume {run_dir}" in err


@pytest.mark.slow
def test_nan_loss_fails_the_run_and_names_the_learning_rate(tiny_bert, tmp_path, capsys):
    status = train("full", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + BASE
                   + ["--learning_rate", "1e6"])
    assert status == 1
    err = capsys.readouterr().err
    assert "NonFiniteLossError: the training loss became nan" in err and "lower --learning_rate" in err, err
    run_dir = only_run(tmp_path)
    results = assert_nothing_claims_completion(run_dir)
    assert results["run_info"]["status"] == "failed"
    assert "learning rate is most likely too high" in results["run_info"]["error"]
    assert results["train_info"]["stopped_at_step"] < TOTAL_STEPS  # stopped, not trained on to the end
    assert not os.path.exists(os.path.join(run_dir, "checkpoints"))


@pytest.mark.slow
def test_out_of_memory_fails_with_the_batch_size_and_a_way_out(tiny_bert, tmp_path, capsys, monkeypatch):
    from ftbench import model_loading

    load_model = model_loading.from_pretrained

    def load(*args, **kwargs):
        model, info = load_model(*args, **kwargs)
        calls = []

        def run_out_on_the_third_training_batch(module, inputs):
            calls.append(module.training)
            if sum(calls) == 3:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        model.register_forward_pre_hook(run_out_on_the_third_training_batch)
        return model, info

    monkeypatch.setattr(model_loading, "from_pretrained", load)
    status = runner.run("full", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + BASE,
                        "train_full.py")
    assert status == 1
    results = assert_nothing_claims_completion(only_run(tmp_path))
    error = results["run_info"]["error"]
    assert results["run_info"]["status"] == "failed"
    assert "out of device memory while training at --per_device_train_batch_size 16" in error, error
    assert "--per_device_train_batch_size 8 --gradient_accumulation_steps 2" in error, error
    assert "out of device memory" in capsys.readouterr().err


@pytest.mark.slow
def test_interrupt_before_training_writes_nothing(tiny_bert, tmp_path, capsys, monkeypatch):
    from ftbench import model_loading

    def load(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the weights load

    monkeypatch.setattr(model_loading, "from_pretrained", load)
    status = runner.run("full", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + BASE,
                        "train_full.py")
    assert status == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: interrupted before training started; nothing was written"], err
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.slow
def test_simultaneous_runs_never_share_a_folder(tmp_path):
    folders, barrier = [], threading.Barrier(8)

    def make():
        barrier.wait()
        folders.append(run_store.create_run_dir(str(tmp_path), "lora", "sst2", "minilm", None))
    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 8 and all(os.path.isdir(f) for f in folders)

"""Where results go: an --output_dir that cannot take run folders is refused in one line before anything is
written, and a disk that fills up during a run ends it as failed, with that cause."""

from __future__ import annotations

import errno
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import train

TINY = ["--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16"]


def tree(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, folders, files in os.walk(root) for name in folders + files)


def errors(capsys) -> list[str]:
    """The suite's error lines on stderr (the progress bar redraws itself there too)."""
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    return [line[line.index("error: "):] for line in lines if "error: " in line]


@pytest.fixture
def in_empty_folder(tmp_path, monkeypatch):
    """Run from an empty folder, so that a file written anywhere relative to it (results/ by default) shows."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("shape, message", [
    ("file", "--output_dir '{out}' is a file; give a folder that can be written (it is created if missing)"),
    ("under_file", "--output_dir '{out}' cannot be created: '{file}' is a file; give a folder that can be written "
                   "(it is created if missing)"),
    ("runs_is_file", "--output_dir '{out}' cannot be created: '{runs}' is a file; give a folder that can be "
                     "written (it is created if missing)"),
])
def test_an_output_dir_that_cannot_hold_runs_is_refused_in_one_line(shape, message, tiny_bert, in_empty_folder,
                                                                     capsys):
    file = in_empty_folder / "notes.txt"
    file.write_text("mine\n")
    out = {"file": file, "under_file": file / "results"}.get(shape, in_empty_folder / "out")
    if shape == "runs_is_file":
        out.mkdir()
        (out / "runs").write_text("")
    before = tree(in_empty_folder)
    assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(out)] + TINY) == 2
    err = capsys.readouterr().err
    assert err == "error: " + message.format(out=out, file=file, runs=out / "runs") + "\n"
    assert tree(in_empty_folder) == before and file.read_text() == "mine\n"


@pytest.mark.parametrize("flaw, message", [
    ("read_only_file_system", "is on a read-only file system"),
    ("no_permission", "cannot be written: no permission to write in"),
])
def test_a_read_only_output_dir_is_refused(flaw, message, tiny_bert, in_empty_folder, monkeypatch, capsys):
    # As root (CI, these machines) permission bits do not stop a write, so the operating system's answer is
    # replaced by the one a read-only mount or an unprivileged user would get.
    import config

    out = in_empty_folder / "shared"
    out.mkdir()
    if flaw == "read_only_file_system":
        real = os.statvfs

        class ReadOnly:
            def __init__(self, path):
                self.f_flag = real(path).f_flag | os.ST_RDONLY

        monkeypatch.setattr(config.os, "statvfs", ReadOnly)
    else:
        monkeypatch.setattr(config.os, "access", lambda path, mode: False)
    assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(out / "results")] + TINY) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --output_dir '{out / 'results'}' {message}") and err.count("\n") == 1
    assert f"'{out}'" in err and tree(in_empty_folder) == ["shared"]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(parts=st.lists(st.sampled_from(["folder", "file", "missing"]), min_size=1, max_size=4))
def test_generated_output_paths_are_accepted_exactly_when_run_folders_can_be_made(tmp_path_factory, parts):
    """A path built of existing folders, a file, and missing parts: refused (one line, nothing created) exactly
    when some part of it that exists is a file."""
    from config import ConfigError, check_output_dir

    root = tmp_path_factory.mktemp("paths")
    path = root
    blocked = False
    for i, part in enumerate(parts):
        path = path / f"{part}{i}"
        if blocked or not path.parent.is_dir():
            continue
        if part == "folder":
            path.mkdir()
        elif part == "file":
            path.write_text("")
            blocked = True
    before = tree(root)
    if blocked:
        with pytest.raises(ConfigError) as refused:
            check_output_dir(str(path))
        assert "\n" not in str(refused.value) and str(refused.value).startswith(f"--output_dir '{path}' ")
    else:
        check_output_dir(str(path))
    assert tree(root) == before


def test_a_disk_that_fills_up_during_training_fails_the_run_with_that_cause(tiny_bert, tmp_path, monkeypatch,
                                                                            capsys):
    from ftbench.trainer import BenchmarkTrainer
    def full_disk(self, model, trial):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(self.args.output_dir, "optimizer.pt"))

    monkeypatch.setattr(BenchmarkTrainer, "_save_checkpoint", full_disk)
    assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + TINY) == 1
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = json.loads((run_dir / "results.json").read_text())["run_info"]
    assert run["status"] == "failed"
    assert run["error"] == (f"the disk is full (No space left on device writing '{run_dir / 'checkpoints'}"
                            f"/optimizer.pt'); free space on the disk holding {run_dir} or give another "
                            f"--output_dir, then run again")
    assert errors(capsys) == [f"error: run failed: {run['error']} (details in {run_dir / 'training_log.txt'})"]
    assert sorted(os.listdir(run_dir)) == [".lock", "results.json", "training_log.txt"]


def test_a_disk_full_when_the_results_are_written_leaves_no_result_behind(tiny_bert, tmp_path, monkeypatch, capsys):
    from ftbench import run_ending

    real = run_ending.write_json_atomic

    def full_after_training(path, payload):
        if payload.get("run_info", {}).get("status", "running") != "running":  # the final record
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(path, payload)

    monkeypatch.setattr(run_ending, "write_json_atomic", full_after_training)
    assert train("lora", ["--model_name_or_path", tiny_bert, "--output_dir", str(tmp_path)] + TINY) == 1
    (run_dir,) = (tmp_path / "runs").iterdir()
    (err,) = errors(capsys)
    assert err.startswith(f"error: run failed: how the run ended could not be recorded in {run_dir / 'results.json'}: "
                          f"the disk is full (No space left on device writing '{run_dir / 'results.json'}')")
    # results.json still says running and the lock is free: the run shows as unfinished, never as a result.
    assert json.loads((run_dir / "results.json").read_text())["run_info"]["status"] == "running"
    assert not {"model", "test_predictions.json"} & set(os.listdir(run_dir))

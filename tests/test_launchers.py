"""Where a sweep's cells run: --parallel N on this machine, and submitit jobs (its local executor here; the SLURM
options checked against submitit's own parameters), with a pre-empted job requeued and its run resumed."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import benchmark
from ftbench import launchers
from ftbench.errors import ConfigError

TINY = "--max_train_samples 160 --max_eval_samples 32 --per_device_train_batch_size 16 --logging_steps 5"


def test_parallel_slots_give_each_cell_a_gpu_or_a_share_of_the_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    slots, note = launchers.parallel_slots(2)
    assert slots == [{"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    assert note == "2 cells at once, one GPU each (2, 5)"
    with pytest.raises(ConfigError, match=r"^--parallel 3 runs one cell per GPU, and 2 are visible; give "
                                          r"--parallel 2 or fewer$"):
        launchers.parallel_slots(3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    slots, note = launchers.parallel_slots(3)
    assert slots == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}] * 3
    assert note.startswith("3 cells at once on the CPU, 2 thread(s) each of 8 cores")
    assert launchers.parallel_slots(1) == ([{}], "one cell at a time")


def test_the_slurm_options_are_submitit_s_own_parameters(tmp_path):
    submitit = pytest.importorskip("submitit")
    settings = launchers.LaunchSettings(launcher="submitit", cluster="slurm", slurm_partition="gpu", gpus_per_cell=1,
                                        cpus_per_cell=8, mem_gb_per_cell=32, timeout_min=120, array_parallelism=4)
    parameters = launchers.submitit_parameters(settings)
    setup = [f"export PYTHONPATH={launchers.ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"]
    assert parameters == {"name": "ftbench", "timeout_min": 120, "gpus_per_node": 1, "tasks_per_node": 1, "nodes": 1,
                          "cpus_per_task": 8, "mem_gb": 32, "slurm_partition": "gpu", "slurm_array_parallelism": 4,
                          "slurm_setup": setup, "local_setup": setup}
    # submitit checks every name against its executors' documented parameters (SLURM's too) wherever it runs.
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="local")
    executor.update_parameters(**parameters)
    with pytest.raises(NameError, match="slurm_partitionn"):
        executor.update_parameters(slurm_partitionn="gpu")
    slurm = submitit.SlurmExecutor._valid_parameters()  # what the sbatch file takes
    assert {"partition", "array_parallelism", "gpus_per_node", "cpus_per_task", "mem", "time"} <= slurm


@pytest.mark.parametrize("arguments, message", [
    (["--parallel", "0"], "--parallel must be at least 1, got 0"),
    (["--launcher", "submitit", "--parallel", "2"], "--parallel is for --launcher local"),
    (["--slurm_partition", "gpu"], "--slurm_partition goes with --launcher submitit; add it, or drop it"),
    (["--launcher", "ray"], "unknown --launcher 'ray'; choose one of local, submitit"),
])
def test_bad_launch_options_are_refused_in_one_line(arguments, message, tmp_path, capsys):
    status = benchmark.main(["--methods", "lora", "--output_dir", str(tmp_path / "sweeps")] + arguments)
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "sweeps").exists()


def sweep_runs(sweep: Path) -> dict:
    """{cell id: [results of its runs]} of a sweep's folder."""
    return benchmark.find_runs(str(sweep))


@pytest.mark.slow
def test_parallel_runs_two_cells_at_once_each_on_half_the_cores(tiny_bert, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU's rule, on any machine
    status = benchmark.main(["--methods", "lora", "--models", tiny_bert, "--seeds", "1", "2", "--parallel", "2",
                             "--name", "parallel", "--output_dir", str(tmp_path), "--no_report",
                             "--run_args", TINY + " --num_train_epochs 1"])
    assert status == 0, capsys.readouterr()
    runs = sweep_runs(tmp_path / "parallel")
    assert len(runs) == 2
    threads = max(1, (os.cpu_count() or 1) // 2)
    for (run,) in runs.values():
        assert run["run_info"]["status"] == "completed"
        assert run["meta_info"]["torch_num_threads"] == threads
    # Side by side: each started before the other ended.
    (first,), (second,) = runs.values()
    assert first["run_info"]["started_at"] <= second["run_info"]["finished_at"]
    assert second["run_info"]["started_at"] <= first["run_info"]["finished_at"]
    assert "2 cells at once" in capsys.readouterr().out


def preempt_when_checkpointed(sweep: Path, seed: int, sent: list) -> None:
    """Once the seed's run has saved a checkpoint, send submitit's pre-emption signal to its job (the parent of
    the training process), as SLURM does before a time limit or a pre-emption."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for cell_id, runs in sweep_runs(sweep).items():
            info = runs[-1]["run_info"]
            if cell_id.endswith(f"seed{seed}") and (info.get("progress") or {}).get("last_checkpoint_step"):
                job = int(Path(f"/proc/{info['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
                os.kill(job, signal.SIGUSR2)
                sent.append(job)
                return
        time.sleep(0.05)


@pytest.mark.slow
def test_submitit_jobs_run_the_cells_and_a_preempted_job_resumes_its_run(tiny_bert, tmp_path, capsys):
    pytest.importorskip("submitit")
    sweep, sent = tmp_path / "submitit", []
    watcher = threading.Thread(target=preempt_when_checkpointed, args=(sweep, 2, sent), daemon=True)
    watcher.start()
    status = benchmark.main(["--methods", "lora", "--models", tiny_bert, "--seeds", "1", "2",
                             "--launcher", "submitit", "--cluster", "local", "--timeout_min", "30",
                             "--name", "submitit", "--output_dir", str(tmp_path), "--no_report",
                             "--run_args", TINY + " --num_train_epochs 12 --evals_per_epoch 1"])
    watcher.join(timeout=5)
    assert status == 0, capsys.readouterr()
    assert sent, "the pre-emption signal was never sent"
    runs = sweep_runs(sweep)
    (resumed,) = runs[benchmark.Cell("run", "lora", "tweets", tiny_bert, 2).cell_id]
    (plain,) = runs[benchmark.Cell("run", "lora", "tweets", tiny_bert, 1).cell_id]
    # The pre-empted run continued in its own folder from its checkpoint, to the same end as the other seed.
    assert resumed["run_info"]["status"] == plain["run_info"]["status"] == "completed"
    assert [r["from_status"] for r in resumed["run_info"]["resumes"]] == ["interrupted"]
    # By the job's own pre-emption hook (it stops the run, then submitit requeues the job).
    log = (sweep / "logs" / f"{benchmark.Cell('run', 'lora', 'tweets', tiny_bert, 2).cell_id}.log").read_text()
    assert log.count("pre-empted or out of time: the run was stopped at a checkpoint; the job is requeued") == 1
    assert resumed["train_info"]["global_steps"] == plain["train_info"]["global_steps"]
    assert "resumes" not in plain["run_info"]
    manifest = json.loads((sweep / "benchmark.json").read_text())
    assert [cell["status"] for cell in manifest["cells"]] == ["completed", "completed"]

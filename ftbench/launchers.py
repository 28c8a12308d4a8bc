"""Where a sweep's cells run: one after another on this machine (the default), N at once on this machine
(--parallel N), or as jobs through submitit (--launcher submitit: a SLURM job array, or submitit's local executor).
In every case a cell is one normal training run in its own folder, so the run folders stay the record: a re-run of
the sweep skips completed cells and resumes interrupted ones from their checkpoints.

    launcher, how = make_launcher(settings, sweep_folder)
    outcomes = launcher.run([CellJob(cell, sweep, chosen), ...], started, finished)   # [(exit status, seconds)]
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ftbench.errors import ConfigError, check, check_only_with, flags_set
from ftbench.registry import get_method
from ftbench.sweep_cells import Cell, Sweep, resumable_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where the train_<method>.py scripts are
POLL_S = 1.0  # how often a running cell is asked whether to stop (an Optuna trial's pruning)
LAUNCHERS = ("local", "submitit")
CLUSTERS = ("auto", "slurm", "local")
SUBMITIT_ONLY = ("cluster", "slurm_partition", "gpus_per_cell", "cpus_per_cell", "mem_gb_per_cell", "timeout_min",
                 "array_parallelism")


@dataclass
class LaunchSettings:
    """How the cells run (benchmark.py's options). Not part of the sweep's settings: a sweep started one way can be
    resumed another."""

    launcher: str = field(default="local", metadata={
        "help": "Where the cells run: 'local' (this machine; --parallel N at once) or 'submitit' (each cell a job: "
                "a SLURM job array where sbatch exists, else submitit's local executor; --cluster chooses)."})
    parallel: int = field(default=1, metadata={
        "help": "Cells run at once on this machine: one GPU each (CUDA_VISIBLE_DEVICES) where there are GPUs, or on "
                "the CPU the cores split evenly between them (their times are then measured side by side)."})
    cluster: str = field(default="auto", metadata={
        "help": "With --launcher submitit: 'auto' (SLURM if available, else local), 'slurm', or 'local'."})
    slurm_partition: str | None = field(default=None, metadata={"help": "SLURM partition of the cells' jobs."})
    gpus_per_cell: int = field(default=0, metadata={"help": "With --launcher submitit: GPUs per cell's job."})
    cpus_per_cell: int | None = field(default=None, metadata={"help": "With --launcher submitit: CPUs per job."})
    mem_gb_per_cell: float | None = field(default=None, metadata={"help": "With --launcher submitit: memory per job, "
                                                                         "in GB."})
    timeout_min: int = field(default=24 * 60, metadata={
        "help": "With --launcher submitit: each job's time limit in minutes; a job that reaches it stops its run at "
                "a checkpoint and is requeued, resuming it."})
    array_parallelism: int | None = field(default=None, metadata={
        "help": "With --launcher submitit on SLURM: cells of a job array running at once (SLURM's %%N)."})

    def __post_init__(self):
        check(self.launcher in LAUNCHERS, f"unknown --launcher '{self.launcher}'; choose one of {', '.join(LAUNCHERS)}")
        check(self.parallel >= 1, f"--parallel must be at least 1, got {self.parallel}")
        check(self.launcher == "local" or self.parallel == 1,
              "--parallel is for --launcher local; with submitit, --array_parallelism limits the jobs at once")
        check(self.cluster in CLUSTERS, f"unknown --cluster '{self.cluster}'; choose one of {', '.join(CLUSTERS)}")
        check_only_with(flags_set(self, SUBMITIT_ONLY), "--launcher submitit", self.launcher == "submitit")
        check(self.timeout_min >= 1, f"--timeout_min must be at least 1, got {self.timeout_min}")


def libc_prctl():
    """libc's prctl, looked up in the parent (the child of a fork from a thread must not load libraries)."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PRCTL = libc_prctl()


def die_with_parent() -> None:
    """In the child: receive SIGINT when its parent dies (even by SIGKILL), so that an orphaned run stops and
    records itself as interrupted instead of finishing unobserved beside a re-run of its cell."""
    if PRCTL is not None:
        PRCTL(1, signal.SIGINT)  # PR_SET_PDEATHSIG


def child_setup() -> None:
    """In the cell's training process: die with the parent; and ignore submitit's pre-emption signal (SLURM's
    --signal reaches every process of the job), which the job itself turns into SIGTERM for the run."""
    die_with_parent()
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


@dataclass
class CellJob:
    """One cell's training run in its own process, its output in <sweep>/logs/<cell id>.log. Callable, so that
    submitit can send it as a job; the command is made when it starts, so a job that runs again (a requeue, a
    re-run of the sweep) resumes the cell's interrupted run from its checkpoint instead of starting over.

    A job that is pre-empted or times out under submitit (its signal, before SLURM's kill) stops its run with
    SIGTERM, which the runner records as interrupted at a checkpoint, and is requeued."""

    cell: Cell
    sweep: Sweep
    chosen_options: list[str] | None = None  # what the cell's search chose
    env: dict | None = None  # added to the environment: the GPU or the threads of a --parallel slot
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:  # pickled for submitit: the running process stays here
        return {**self.__dict__, "process": None}

    def log_path(self) -> str:
        return os.path.join(self.sweep.folder, "logs", f"{self.cell.cell_id}.log")

    def command(self) -> list[str]:
        resume_dir = resumable_run(self.cell, self.sweep)
        return [sys.executable, os.path.join(ROOT, get_method(self.cell.method).script)] + (
            ["--resume", resume_dir] if resume_dir else self.cell.argv(self.sweep, self.chosen_options))

    def __call__(self, watch=None) -> tuple[int, float]:
        """(exit status, seconds); watch() is asked every POLL_S seconds whether to stop the run (an Optuna
        trial's pruning)."""
        os.makedirs(os.path.join(self.sweep.folder, "logs"), exist_ok=True)
        command, start = self.command(), time.monotonic()
        with open(self.log_path(), "a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=child_setup, env={**os.environ, **(self.env or {})})
            try:
                status = wait_for(self.process, watch)
            except KeyboardInterrupt as interrupt:
                stop(self.process, at_once="SIGTERM" in interrupt.args)
                raise
        return status, time.monotonic() - start

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on pre-emption or time-out (it looks for a method of this name): the run stops at a
        checkpoint, and the cell is requeued."""
        from submitit.helpers import DelayedSubmission

        if self.process is not None and self.process.returncode is None:
            # Called in a signal handler, maybe inside Popen.wait (which holds a lock Popen.wait would need again).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.process.pid, 0)
            with open(self.log_path(), "a", encoding="utf-8") as log:
                log.write("pre-empted or out of time: the run was stopped at a checkpoint; the job is requeued\n")
        return DelayedSubmission(CellJob(self.cell, self.sweep, self.chosen_options, self.env), *args, **kwargs)


def run_cell(cell: Cell, sweep: Sweep, chosen_options: list[str] | None, watch=None) -> tuple[int, float]:
    """One cell's run here and now: (exit status, seconds)."""
    return CellJob(cell, sweep, chosen_options)(watch)


def stop(process: subprocess.Popen, at_once: bool = False) -> None:
    """Ctrl-C in a terminal reaches the child too (same process group) and it records itself as interrupted; a
    second signal could cut that short, so it is sent only if the child goes on. A SIGTERM sent to the sweep alone
    (kill, a scheduler) is passed on at once."""
    if at_once and process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        process.wait()


def wait_for(process: subprocess.Popen, watch) -> int:
    """The process's exit status. While it runs, watch() is asked every POLL_S seconds whether to stop it (an
    Optuna trial's pruner): then it gets SIGTERM, which the runner records as an interrupted run, never a result."""
    while watch is not None:
        try:
            return process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            if watch():
                process.send_signal(signal.SIGTERM)
                break
    return process.wait()


# ---------------------------------------------------------------------------------------------------
# The launchers: run(jobs, started, finished) -> [(exit status, seconds)] in the jobs' order; started(i) and
# finished(i, status, seconds) report each cell as it goes (from worker threads with --parallel).


class LocalLauncher:
    """This machine: one cell at a time, or N at once, each in a slot of its own (a GPU, or a share of the cores)."""

    def __init__(self, slots: list[dict]):
        self.slots = slots

    def run(self, jobs: list[CellJob], started, finished) -> list[tuple[int, float]]:
        if len(self.slots) == 1:
            return [self.run_one(job, self.slots[0], index, started, finished) for index, job in enumerate(jobs)]
        free: queue.Queue = queue.Queue()
        for slot in self.slots:
            free.put(slot)
        stopping = threading.Event()  # set on an interrupt: no cell starts after it

        def in_a_slot(index: int) -> tuple[int, float] | None:
            slot = free.get()
            try:
                return None if stopping.is_set() else self.run_one(jobs[index], slot, index, started, finished)
            finally:
                free.put(slot)

        pool = ThreadPoolExecutor(max_workers=len(self.slots))
        futures = [pool.submit(in_a_slot, index) for index in range(len(jobs))]
        try:
            return [future.result() for future in futures]
        except KeyboardInterrupt as interrupt:
            stopping.set()
            pool.shutdown(wait=False, cancel_futures=True)
            for job in jobs:  # the children had the terminal's Ctrl-C too; those that go on get one
                if job.process is not None and job.process.poll() is None:
                    stop(job.process, at_once="SIGTERM" in interrupt.args)
            raise
        finally:
            pool.shutdown(wait=True)

    @staticmethod
    def run_one(job: CellJob, slot: dict, index: int, started, finished) -> tuple[int, float]:
        job.env = {**(job.env or {}), **slot}
        started(index)
        status, seconds = job()
        finished(index, status, seconds)
        return status, seconds


def visible_gpus() -> list[str]:
    """The GPUs a cell may be given, as CUDA_VISIBLE_DEVICES names them (torch counts them when unset)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip() and gpu.strip() != "-1"]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def parallel_slots(parallel: int) -> tuple[list[dict], str]:
    """N slots on this machine and a sentence saying what each gets: one GPU each (CUDA_VISIBLE_DEVICES), or on
    the CPU the cores split evenly (OMP_NUM_THREADS, which torch reads at start)."""
    if parallel == 1:
        return [{}], "one cell at a time"
    gpus = visible_gpus()
    if gpus:
        if parallel > len(gpus):
            raise ConfigError(f"--parallel {parallel} runs one cell per GPU, and {len(gpus)} are visible; give "
                              f"--parallel {len(gpus)} or fewer")
        return ([{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus[:parallel]],
                f"{parallel} cells at once, one GPU each ({', '.join(gpus[:parallel])})")
    cores = os.cpu_count() or 1
    threads = max(1, cores // parallel)
    note = (f"{parallel} cells at once on the CPU, {threads} thread(s) each of {cores} cores: their times and "
            f"memory are measured while the others run, so compare them with each other, not with a sweep run "
            f"one cell at a time")
    return [{"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}] * parallel, note


def submitit_parameters(settings: LaunchSettings) -> dict:
    """submitit's AutoExecutor parameters for one cell: generic names, and slurm_-prefixed ones that only SLURM reads
    (on SLURM the cells of a batch go as one job array)."""
    parameters = {"name": "ftbench", "timeout_min": settings.timeout_min, "gpus_per_node": settings.gpus_per_cell,
                  "tasks_per_node": 1, "nodes": 1, "cpus_per_task": settings.cpus_per_cell,
                  "mem_gb": settings.mem_gb_per_cell, "slurm_partition": settings.slurm_partition,
                  "slurm_array_parallelism": settings.array_parallelism,
                  # The job unpickles a CellJob, so it imports this suite: from its folder, wherever the job starts.
                  "slurm_setup": [f"export PYTHONPATH={shlex.quote(ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}"],
                  "local_setup": [f"export PYTHONPATH={shlex.quote(ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}"]}
    return {key: value for key, value in parameters.items() if value is not None}


class SubmititLauncher:
    """Each cell a submitit job, all of a batch submitted at once (a SLURM job array), then waited for."""

    def __init__(self, settings: LaunchSettings, folder: str):
        try:
            import submitit
        except ImportError:
            raise ConfigError("--launcher submitit needs the submitit package: pip install submitit "
                              "(or pip install -r requirements-tools.txt)") from None
        try:
            self.cluster = submitit.AutoExecutor.which() if settings.cluster == "auto" else settings.cluster
        except RuntimeError as error:
            raise ConfigError(f"--launcher submitit: {error}") from None
        slurm_only = [f"--{name}" for name in ("slurm_partition", "array_parallelism") if getattr(settings, name)]
        check(self.cluster == "slurm" or not slurm_only,
              f"{' and '.join(slurm_only)} {'is' if len(slurm_only) == 1 else 'are'} for SLURM, and submitit runs "
              f"the cells with its {self.cluster} executor here; drop {'it' if len(slurm_only) == 1 else 'them'}, "
              f"or submit from a machine with SLURM")
        try:
            self.executor = submitit.AutoExecutor(folder=os.path.join(folder, "submitit", "%j"), cluster=self.cluster)
        except RuntimeError as error:  # e.g. --cluster slurm where there is no srun
            raise ConfigError(f"--launcher submitit --cluster {settings.cluster}: {error}") from None
        self.executor.update_parameters(**submitit_parameters(settings))

    def run(self, jobs: list[CellJob], started, finished) -> list[tuple[int, float]]:
        if not jobs:
            return []
        with self.executor.batch():
            submitted = [self.executor.submit(job) for job in jobs]
        for index in range(len(jobs)):
            started(index)
        outcomes: dict[int, tuple[int, float]] = {}
        try:
            while len(outcomes) < len(jobs):
                for index, job in enumerate(submitted):
                    if index not in outcomes and job.done():
                        outcomes[index] = job_outcome(job)
                        finished(index, *outcomes[index])
                time.sleep(POLL_S)
        except KeyboardInterrupt:  # the jobs stop too: their runs are interrupted, and a re-run resumes them
            for index, job in enumerate(submitted):
                if index not in outcomes:
                    job.cancel(check=False)
            raise
        return [outcomes[index] for index in range(len(jobs))]


def job_outcome(job) -> tuple[int, float]:
    """A finished job's (exit status, seconds); a job that died or was cancelled before its cell could say counts
    as failed (status 1; its run folder, if any, says how far it got and resumes on the next sweep)."""
    try:
        return job.result()
    except Exception as error:  # noqa: BLE001 - submitit raises the job's own error, or UncompletedJobError
        print(f"    job {job.job_id} ended without its cell's outcome ({type(error).__name__}); see {job.paths.stderr}",
              flush=True)
        return 1, 0.0


def make_launcher(settings: LaunchSettings, sweep_folder: str) -> tuple[LocalLauncher | SubmititLauncher, str]:
    """The launcher, and a sentence saying how the cells run."""
    if settings.launcher == "submitit":
        launcher = SubmititLauncher(settings, sweep_folder)
        return launcher, f"each cell a submitit job ({launcher.cluster}), the cells of a batch at once"
    slots, note = parallel_slots(settings.parallel)
    return LocalLauncher(slots), note

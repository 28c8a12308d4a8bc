"""The strongest simple alternative to the suite's pipeline: what a user who knows the Hugging Face Trainer
writes in a few lines, measured so that bench_speed.py can put the suite beside it.

    python -m ftbench.competent_pipeline lora --result out.json -- <train_lora.py options>

The same examples, model, method and optimizer settings as the suite's run with those options (the data, the
model and the method are built by the suite's own steps, so that only the pipeline differs). The pipeline is
a plain Trainer, as its documentation shows it: DataCollatorWithPadding (each batch padded to its longest
text), train_sampling_strategy="group_by_length", the Trainer's default optimizer, bf16 autocast where
--precision resolves to bf16 (use_cpu=True on the CPU), no evaluation while training. Throughput is the
user's view of it: the Trainer's own train_runtime. Accuracy: the final model on validation and test.
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

from ftbench.errors import ConfigError
from ftbench.finish import PhaseClock
from ftbench.metrics import classification_metrics
from ftbench.precision import resolve_precision
from ftbench.provenance import environment_info
from ftbench.registry import get_method
from ftbench.run_store import write_json_atomic
from ftbench.trainer import budget_arguments, optimizer_arguments


def _trainer(run_config, model, tokenizer, tokenized, device, precision: str, output_dir: str):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    training = run_config.training
    args = TrainingArguments(
        output_dir=output_dir,
        **budget_arguments(training),  # the suite's own budget and optimizer settings: only the pipeline differs
        **optimizer_arguments(training),
        train_sampling_strategy="group_by_length",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.type == "cpu",
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
    )
    return Trainer(model=model, args=args, train_dataset=tokenized["train"], processing_class=tokenizer,
                   data_collator=DataCollatorWithPadding(tokenizer),
                   compute_metrics=lambda p: classification_metrics(p.predictions, p.label_ids))


def measure(method: str, argv: list[str]) -> dict:
    """Train with the competent user's pipeline on what the suite's run with argv would train on."""
    from ftbench.runner import RunContext, build_model, prepare
    from ftbench.stopping import StopRequest

    started = time.perf_counter()
    ctx = RunContext(method=get_method(method), argv=argv, prog=f"train_{method}.py", stop=StopRequest(),
                     clock=PhaseClock(started))
    prepare(ctx)
    build_model(ctx, ctx.model_path)
    precision, reason = resolve_precision(ctx.run_config.training.precision, ctx.device)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = _trainer(ctx.run_config, ctx.model, ctx.tokenizer, ctx.tokenized, ctx.device, precision, scratch)
        output = trainer.train()
        validation = trainer.evaluate(ctx.tokenized["validation"], metric_key_prefix="val")
        test = trainer.predict(ctx.tokenized["test"], metric_key_prefix="test").metrics
    state = trainer.state
    samples = state.global_step * ctx.run_config.training.per_device_train_batch_size \
        * ctx.run_config.training.gradient_accumulation_steps
    samples = min(samples, int(np.ceil(state.epoch * len(ctx.tokenized["train"]))))  # the last batch may be short
    runtime = output.metrics["train_runtime"]
    return {
        "pipeline": {"name": "competent Trainer user", "padding": "longest (DataCollatorWithPadding)",
                     "train_sampling_strategy": "group_by_length", "precision": precision,
                     "precision_reason": reason, "optimizer": trainer.args.optim.value},
        "train_runtime_s": runtime,
        "train_samples": samples,
        "train_samples_per_s": samples / runtime,
        "global_steps": state.global_step,
        "epochs": state.epoch,
        "val_accuracy": validation["val_accuracy"],
        "test_accuracy": test["test_accuracy"],
        "peak_rss_mib_whole_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wall_time_s": time.perf_counter() - started,
        "device_name": environment_info(ctx.device)["device_name"],
        "torch_num_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftbench.competent_pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("method", help="A method of the suite, e.g. full or lora.")
    parser.add_argument("--result", required=True, help="JSON file the measurement is written to.")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])  # after --: the train_<method>.py options, as they are
    run_args = argv[split + 1:]
    try:
        result = measure(args.method, run_args)
    except (ConfigError, ValueError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    result["command"] = ["python", "-m", "ftbench.competent_pipeline"] + argv
    os.makedirs(os.path.dirname(os.path.abspath(args.result)), exist_ok=True)
    write_json_atomic(args.result, result)
    print(f"competent pipeline: {result['train_samples_per_s']:.1f} samples/s ({result['pipeline']['precision']}), "
          f"validation accuracy {result['val_accuracy']:.4f}, test accuracy {result['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

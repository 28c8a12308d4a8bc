"""inference.py --benchmark: the forward pass of a run's model timed on its device, latency at batch size 1
and throughput at a larger batch, for a LoRA-family run as loaded (adapters unmerged) and merged into the
weights, with the speed-up and the largest logit difference between the two.

    record = run_benchmark(args, model, tokenizer, results, texts, device, merge, load_copy)
    print(benchmark_table(record))

inference.py loads the run, decides whether a merged copy can be measured (merge_plan), and writes the record
to the run folder; nothing here loads or writes a run.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable

import numpy as np
import torch

BENCHMARK_DEFAULTS = {"benchmark_batch_size": 64, "benchmark_warmup": 10, "benchmark_iterations": 100,
                      "benchmark_batches": 20}


def benchmark_inputs(tokenizer, texts: list[str], max_length: int, batch_size: int, device: torch.device):
    """Tokenised inputs, on the device before any clock runs: one batch-of-1 input per sentence (no padding),
    one batch of batch_size sentences (the sentences repeated in order, padded to the longest), and one batch
    of the distinct sentences (for comparing variants' logits); with what they hold."""
    singles = [tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt").to(device)
               for text in texts]
    lengths = [int(single["input_ids"].shape[1]) for single in singles]
    batch_texts = [texts[i % len(texts)] for i in range(batch_size)]
    batch = tokenizer(batch_texts, truncation=True, max_length=max_length, padding=True,
                      return_tensors="pt").to(device)
    distinct = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(device)
    batch_lengths = [lengths[i % len(texts)] for i in range(batch_size)]
    described = {
        "num_sentences": len(texts),
        "sentences": texts,
        "token_lengths": lengths,  # with special tokens, truncated at max_seq_length; batch 1 has no padding
        "max_seq_length": max_length,
        "batch": {"batch_size": batch_size, "padded_length": int(batch["input_ids"].shape[1]),
                  "real_tokens": sum(batch_lengths),
                  "composition": "the sentences repeated in order to fill the batch, padded to the longest"},
    }
    return singles, batch, distinct, described


@torch.inference_mode()
def _forward_ms(model, inputs, device: torch.device) -> float:
    from logger_callback import synchronize  # imported here like the other training-side modules; before the clock

    synchronize(device)
    start = time.perf_counter()
    model(**inputs)
    synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def measure(models: dict, singles: list, batch, device: torch.device, warmup: int, iterations: int,
            batches: int) -> dict:
    """{variant: figures}: latency of batch-1 calls (cycling through the sentences) and throughput of whole
    batches, each after its own warm-up calls. With several variants the timed calls are interleaved, call by
    call and alternating which variant goes first, so that a drift in the machine's speed (other processes,
    clock changes) falls on all of them alike. Only the forward pass is timed."""
    for model in models.values():
        model.eval()

    def rounds(count: int, inputs_for) -> dict:
        times = {name: [] for name in models}
        names = list(models)
        for i in range(count):
            for name in (names if i % 2 == 0 else names[::-1]):
                times[name].append(_forward_ms(models[name], inputs_for(i), device))
        return times

    rounds(warmup, lambda i: singles[i % len(singles)])
    latency = rounds(iterations, lambda i: singles[i % len(singles)])
    rounds(warmup, lambda i: batch)
    batch_times = rounds(batches, lambda i: batch)
    batch_size = int(batch["input_ids"].shape[0])
    real_tokens = int(batch["attention_mask"].sum())
    figures = {}
    for name in models:
        calls, batch_ms = latency[name], batch_times[name]
        total_s = sum(batch_ms) / 1000.0
        figures[name] = {
            "latency": {
                "batch_size": 1,
                "latency_ms_median": float(np.median(calls)),
                "latency_ms_p90": float(np.percentile(calls, 90)),
                "latency_ms_mean": float(np.mean(calls)),
                "latency_ms_min": float(np.min(calls)),
                "num_timed_iterations": iterations,
                "num_warmup_iterations": warmup,
            },
            "throughput": {
                "batch_size": batch_size,
                "throughput_samples_per_s": batch_size * batches / total_s,
                "throughput_tokens_per_s": real_tokens * batches / total_s,  # real (non-padding) tokens
                "batch_ms_median": float(np.median(batch_ms)),
                "num_timed_iterations": batches,
                "num_warmup_iterations": warmup,
            },
        }
    return figures


@torch.inference_mode()
def _logits(model, inputs) -> torch.Tensor:
    return model(**inputs).logits.float().cpu()


VARIANT_NOTES = {"unmerged": "the peft model as loaded: adapter layers run beside the frozen weights",
                 "merged": "a fresh copy after merge_and_unload(): a plain model with the update in its weights",
                 "merged_model": "merged_model/ as saved by --export_merged",
                 "as_loaded": "the model as inference.py loads it"}


def benchmark_models(model, merged: bool, merge: tuple[bool, str | None], load_copy: Callable,
                     device: torch.device) -> tuple[dict, bool, str | None]:
    """({variant: model} to time, whether a merged copy is among them, why not): the model as loaded, and a
    merged copy of a fresh load beside it when merge says it can be made."""
    can_merge, why_not = merge
    first = "unmerged" if can_merge else ("merged" if merged else "as_loaded")
    models = {first: model}
    if can_merge:
        # merge_and_unload changes the model in place: merge a second copy
        fresh = load_copy()
        try:
            models["merged"] = fresh.merge_and_unload().to(device).eval()
        except (AttributeError, NotImplementedError, ValueError, TypeError, RuntimeError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            can_merge, why_not = False, f"merge_and_unload failed: {message}"
            models = {"as_loaded": model}
    return models, can_merge, why_not


def compare_variants(models: dict, variants: dict, distinct) -> dict:
    """Merged against unmerged: the largest logit difference on the distinct sentences, whether the
    predictions agree, and the speed-ups."""
    reference, other = _logits(models["unmerged"], distinct), _logits(models["merged"], distinct)
    latency_ratio = (variants["unmerged"]["latency"]["latency_ms_median"]
                     / variants["merged"]["latency"]["latency_ms_median"])
    throughput_ratio = (variants["merged"]["throughput"]["throughput_samples_per_s"]
                        / variants["unmerged"]["throughput"]["throughput_samples_per_s"])
    return {
        "max_abs_logit_diff": float((reference - other).abs().max()),
        "predictions_agree": bool((reference.argmax(-1) == other.argmax(-1)).all()),
        "latency_speedup_merged_over_unmerged": latency_ratio,  # unmerged median ms / merged median ms
        "throughput_speedup_merged_over_unmerged": throughput_ratio,  # merged sentences/s / unmerged
        "unmerged_latency_slower_pct": 100.0 * (latency_ratio - 1),
        "unmerged_throughput_lower_pct": 100.0 * (1 - 1 / throughput_ratio),
    }


def machine_description(device: torch.device, load_before, load_after) -> dict:
    """Where the timing ran: device, CPU, threads, the load averages around it, library versions."""
    import peft
    import transformers

    from ftbench.provenance import cpu_name

    return {
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        # 1/5/15-minute load averages when timing began and ended: well above this process's threads means the
        # machine was shared with other work, and the figures with it
        "load_average": [round(x, 2) for x in load_before] if load_before else None,
        "load_average_after": [round(x, 2) for x in load_after] if load_after else None,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }


def run_benchmark(args, model, tokenizer, results: dict, texts: list[str], device: torch.device,
                  merge: tuple[bool, str | None], load_copy: Callable) -> dict:
    """Measure the model as loaded (and, for LoRA-family runs, a merged copy); nothing is written here.
    merge: (whether a merged copy can be measured, why not), as inference.merge_plan says; load_copy: returns
    a fresh load of the same model, to merge."""
    info = results["run_info"]
    max_length = info["config"]["data"]["max_seq_length"]
    singles, batch, distinct, inputs = benchmark_inputs(tokenizer, texts, max_length, args.benchmark_batch_size,
                                                        device)
    options = (args.benchmark_warmup, args.benchmark_iterations, args.benchmark_batches)
    models, can_merge, why_not = benchmark_models(model, args.merged, merge, load_copy, device)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    figures = measure(models, singles, batch, device, *options)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    variants = {name: {"note": VARIANT_NOTES["merged_model" if args.merged else name], **figures[name]}
                for name in models}
    comparison = compare_variants(models, variants, distinct) if can_merge else None
    return {
        "schema_version": 1,
        "run_id": info["run_id"],
        "method": info["method"],
        "method_label": info.get("method_label", info["method"]),
        "model_name_or_path": info["model_name_or_path"],
        "loaded_from": "merged_model" if args.merged else "model",
        "timestamp": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["inference.py"] + list(args.argv)),
        **machine_description(device, load_before, load_after),
        "timed": "the model's forward pass under torch.inference_mode() in eval mode; inputs tokenised and on the "
                 "device beforehand; time.perf_counter, CUDA synchronised before each clock read; variants "
                 "interleaved call by call",
        "units": {"latency_ms_*": "milliseconds per call of batch size 1",
                  "throughput_samples_per_s": "sentences per second",
                  "throughput_tokens_per_s": "real (non-padding) tokens per second",
                  "batch_ms_median": "milliseconds per batch"},
        "options": {"warmup_iterations": args.benchmark_warmup, "latency_iterations": args.benchmark_iterations,
                    "throughput_iterations": args.benchmark_batches, "batch_size": args.benchmark_batch_size},
        "inputs": inputs,
        "merge": {"measured": can_merge, "why_not": why_not},
        "variants": variants,
        "comparison": comparison,
    }


def benchmark_table(record: dict) -> str:
    batch = record["options"]["batch_size"]
    lengths = record["inputs"]["token_lengths"]
    loads = [record[key][0] for key in ("load_average", "load_average_after") if record.get(key)]
    load = " -> ".join(f"{x:.2f}" for x in loads) or "?"
    lines = [f"inference benchmark on {record['device']}"
             f"{' (' + record['gpu_name'] + ')' if record['gpu_name'] else ''}, cpu {record['cpu']}, "
             f"{record['torch_threads']} torch threads, load average {load}; "
             f"{len(lengths)} sentences of {min(lengths)}-{max(lengths)} "
             f"tokens, batch {batch} padded to {record['inputs']['batch']['padded_length']}",
             f"{'variant':<10} {'latency b=1 median ms':>22} {'p90 ms':>8} {f'throughput b={batch} sent/s':>26}"]
    for name, variant in record["variants"].items():
        latency, throughput = variant["latency"], variant["throughput"]
        lines.append(f"{name:<10} {latency['latency_ms_median']:>22.2f} {latency['latency_ms_p90']:>8.2f} "
                     f"{throughput['throughput_samples_per_s']:>26.1f}")
    comparison = record["comparison"]
    if comparison:
        lines.append(f"merged over unmerged: latency {comparison['latency_speedup_merged_over_unmerged']:.2f}x, "
                     f"throughput {comparison['throughput_speedup_merged_over_unmerged']:.2f}x; "
                     f"max |logit difference| {comparison['max_abs_logit_diff']:.2e}, predictions "
                     f"{'agree' if comparison['predictions_agree'] else 'DIFFER'}")
    elif record["merge"]["why_not"]:
        lines.append(f"no merged variant: {record['merge']['why_not']}")
    if loads and record["cpu_count"] and max(loads) > record["cpu_count"]:
        lines.append(f"warning: load average {load} on {record['cpu_count']} CPUs while timing: other work was "
                     f"running, so these figures are not those of a quiet machine")
    return "\n".join(lines)

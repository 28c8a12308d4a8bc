"""bench_speed.py's reports: each run summarised in the same keys, the suite compared with the other pipelines,
the scaling sweep's table and chart, and writing them (JSON and Markdown)."""

from __future__ import annotations

import os
import re

REPEAT = re.compile(r"-r\d+$")  # a repeated measurement's name: <cell>-r2, -r3, ...


def summarise(results: dict) -> dict:
    from ftbench.run_store import memory_phases

    info, run_info = results["train_info"], results["run_info"]
    steady = info.get("steady_state") or {}
    return {
        "run_id": run_info["run_id"],
        "train_samples_per_s": info["train_samples_per_s"],
        "train_tokens_per_s": info["train_tokens_per_s"],
        "steady_samples_per_s": steady.get("train_samples_per_s"),
        "text_share_of_tokens": info["train_tokens"] / info["train_padded_tokens"],
        "real_tokens_per_sample": info["train_tokens"] / info["train_samples"],
        "train_time_s": info["train_time_s"],
        "epochs": info["epochs"],
        "time_per_epoch_s": info["train_time_s"] / info["epochs"] if info["epochs"] else None,
        "peak_memory_mib": memory_phases(results)[0],  # the fine-tuning phase's: GPU allocated, or CPU RSS
        "memory_kind": "GPU allocated" if info["memory"].get("device_type") == "cuda" else "process resident (RSS)",
        "best_val_accuracy": info["best_val"]["val_accuracy"],
        "test_accuracy": info["test"]["accuracy"],
        "mfu": info.get("utilisation", {}).get("mfu"),
        "achieved_model_flops_per_s": info.get("utilisation", {}).get("achieved_model_flops_per_s"),
        "peak_matmul_flops_per_s": info.get("utilisation", {}).get("peak_matmul_flops_per_s"),
        "pipeline": info.get("pipeline"),
        "device": results["meta_info"]["device_name"],
    }


def fmt(value, spec: str) -> str:
    """value in spec ('.0f%': a number that is already a percentage, then a % sign), or – where there is none."""
    if value is None:
        return "–"
    return format(value, spec[:-1]) + "%" if spec.endswith("%") else format(value, spec)


def summarise_competent(measurement: dict) -> dict:
    """A competent-pipeline measurement in summarise()'s keys (what it does not measure is None)."""
    return {
        "train_samples_per_s": measurement["train_samples_per_s"],
        "train_tokens_per_s": None, "text_share_of_tokens": None, "steady_samples_per_s": None,
        "train_time_s": measurement["train_runtime_s"],
        "time_per_epoch_s": measurement["train_runtime_s"] / measurement["epochs"] if measurement["epochs"] else None,
        "peak_memory_mib": None,  # ru_maxrss covers the whole process, not training: not comparable
        "best_val_accuracy": measurement["val_accuracy"], "test_accuracy": measurement["test_accuracy"],
        "mfu": None, "pipeline": measurement["pipeline"], "device": measurement["device_name"],
    }


def with_repeats(measurements: list[dict], summarise_one) -> dict:
    """The first measurement's summary, with samples/s and time per epoch the median over every repeat, and each
    repeat's samples/s (samples_per_s_each)."""
    import statistics

    rows = [summarise_one(m) for m in measurements]
    summary = dict(rows[0])
    for key in ("train_samples_per_s", "time_per_epoch_s", "train_tokens_per_s"):
        values = [row[key] for row in rows if row[key] is not None]
        summary[key] = statistics.median(values) if values else None
    summary["samples_per_s_each"] = [row["train_samples_per_s"] for row in rows]
    return summary


def repeats_of(runs: dict, name: str) -> list[dict]:
    """The measurements of a pipeline cell: name, then name-r2, name-r3, ... as far as they were made."""
    found, k = [], 2
    if name in runs:
        found.append(runs[name])
    while f"{name}-r{k}" in runs:
        found.append(runs[f"{name}-r{k}"])
        k += 1
    return found


def _rate(row: dict) -> str:
    each = row.get("samples_per_s_each") or []
    spread = f" ({min(each):.1f}–{max(each):.1f}, n={len(each)})" if len(each) > 1 else ""
    return f"{row['train_samples_per_s']:.1f}{spread}"


def pipeline_rows(method: str, named: list[tuple[str, dict]]) -> list[str]:
    return [f"| {method} | {name} | {_rate(row)} | {fmt(row['train_tokens_per_s'], '.0f')} | "
            f"{fmt(row['text_share_of_tokens'] and 100 * row['text_share_of_tokens'], '.0f%')} | "
            f"{row['time_per_epoch_s']:.1f} | {fmt(row['peak_memory_mib'], '.0f')} | {row['best_val_accuracy']:.4f} | "
            f"{row['test_accuracy']:.4f} | {fmt(row['mfu'] and 100 * row['mfu'], '.1f')} |" for name, row in named]


def compare_method(method: str, runs: dict) -> dict | None:
    """The suite against each other pipeline measured for this method: samples/s ratio and accuracy difference
    (points of test accuracy); None where the suite's run is missing."""
    if f"{method}-suite" not in runs:
        return None
    suite = with_repeats(repeats_of(runs, f"{method}-suite"), summarise)
    others = {"recipe": summarise(runs[f"{method}-recipe"])} if f"{method}-recipe" in runs else {}
    for name in sorted(n for n in runs if n.startswith(f"{method}-competent-") and not REPEAT.search(n)):
        others[name[len(method) + 1:]] = with_repeats(repeats_of(runs, name), summarise_competent)
    return {"suite": suite, "others": others, "ratios": {
        name: {"samples_per_s_ratio": suite["train_samples_per_s"] / other["train_samples_per_s"],
               "test_accuracy_difference_points": 100 * (suite["test_accuracy"] - other["test_accuracy"]),
               "val_accuracy_difference_points": 100 * (suite["best_val_accuracy"] - other["best_val_accuracy"])}
        for name, other in others.items()}}


def scaling_report(args, runs: dict, failed: dict, cells: list, folder: str,
                   command: str) -> dict:
    entries, not_measured = [], []
    for cell in cells:
        if cell.run_name not in runs:
            not_measured.append({"method": cell.method, **cell.labels, "reason": failed.get(cell.run_name, "missing")})
            continue
        row = summarise(runs[cell.run_name])
        run_info = runs[cell.run_name]["run_info"]
        # The length the run really used (prefix tuning lowers it where the prefix shifts positions).
        length = {"seq_length": run_info["config"]["data"]["max_seq_length"]}
        entries.append({"method": cell.method, "label": run_info["method_label"], "other_precision": False,
                        "precision": row["pipeline"]["precision"], **cell.labels, **length, **{k: row[k] for k in (
            "run_id", "train_samples_per_s", "steady_samples_per_s", "train_tokens_per_s", "peak_memory_mib",
            "mfu", "device", "memory_kind", "text_share_of_tokens", "real_tokens_per_sample")}})
    if not entries:
        raise RuntimeError("no measurement completed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    lines = [f"# Training throughput and peak memory against sequence length and batch size "
             f"({args.dataset}, {args.model})", "", f"`{command}`", "",
             f"Device: {entries[0]['device']}. Every text padded to the length, {args.steps} training steps, the "
             f"first left out as warm-up; peak memory is {entries[0]['memory_kind']}.", "",
             "| method | seq length | batch | grad. checkpointing | precision | samples/s | real tokens/s | "
             "text share of tokens | peak memory (MiB) | MFU (%) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        rate = e["steady_samples_per_s"] or e["train_samples_per_s"]
        lines.append(f"| {e['label']} | {e['seq_length']} | {e['batch_size']} | "
                     f"{'yes' if e['gradient_checkpointing'] else 'no'} | {e['precision']} | {rate:.2f} | "
                     f"{rate * e['real_tokens_per_sample']:.0f} | {100 * e['text_share_of_tokens']:.0f}% | "
                     f"{fmt(e['peak_memory_mib'], '.0f')} | {fmt(e['mfu'] and 100 * e['mfu'], '.1f')} |")
    for e in not_measured:
        lines.append(f"| {e['method']} | {e['seq_length']} | {e['batch_size']} | "
                     f"{'yes' if e['gradient_checkpointing'] else 'no'} | | not measured: {e['reason']} | | | | |")
    report = {"command": command, "kind": "scaling", "dataset": args.dataset, "model": args.model,
              "steps": args.steps, "entries": entries, "not_measured": not_measured}
    write_report(folder, "scaling", report, lines + [""])
    scaling_chart(report, [runs[cell.run_name] for cell in cells if cell.run_name in runs],
                  os.path.join(folder, "scaling.png"), args)
    return report


def scaling_chart(report: dict, runs: list[dict], path: str, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ftbench.chart_style import method_colours

    entries = [e for e in report["entries"] if not e["other_precision"]]  # the other precision: a table row only
    methods = list(dict.fromkeys(e["label"] for e in entries))
    colours = method_colours(runs)
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    for method in methods:
        for checkpointing, style in ((False, "-"), (True, "--")):
            by_length = sorted((e for e in entries if e["label"] == method and e["batch_size"] == args.base_batch_size
                                and e["gradient_checkpointing"] == checkpointing), key=lambda e: e["seq_length"])
            if by_length:
                label = method + (" + grad. checkpointing" if checkpointing else "")
                xs = [e["seq_length"] for e in by_length]
                axes[0][0].plot(xs, [e["steady_samples_per_s"] or e["train_samples_per_s"] for e in by_length],
                                style, marker="o", color=colours[method], label=label)
                axes[1][0].plot(xs, [e["peak_memory_mib"] for e in by_length], style, marker="o",
                                color=colours[method], label=label)
        by_batch = sorted((e for e in entries if e["label"] == method and e["seq_length"] == args.base_seq_length
                           and not e["gradient_checkpointing"]), key=lambda e: e["batch_size"])
        xs = [e["batch_size"] for e in by_batch]
        axes[0][1].plot(xs, [e["steady_samples_per_s"] or e["train_samples_per_s"] for e in by_batch], marker="o",
                        color=colours[method], label=method)
        axes[1][1].plot(xs, [e["peak_memory_mib"] for e in by_batch], marker="o", color=colours[method], label=method)
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set(title=f"throughput vs sequence length (batch {args.base_batch_size})", ylabel="samples/s")
    axes[1][0].set(xlabel="sequence length (tokens)", ylabel=f"peak memory (MiB, {entries[0]['memory_kind']})")
    axes[0][1].set(title=f"throughput vs batch size (length {args.base_seq_length})", ylabel="samples/s")
    axes[1][1].set(xlabel="batch size", ylabel="peak memory (MiB)")
    axes[0][0].set_yscale("log")
    figure.suptitle(f"Training cost as the work grows — {report['model']} on {entries[0]['device']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(folder: str, stem: str, report: dict, lines: list[str]) -> None:
    from ftbench.run_store import write_json_atomic, write_text_atomic

    write_json_atomic(os.path.join(folder, f"{stem}.json"), report)
    write_text_atomic(os.path.join(folder, f"{stem}.md"), "\n".join(lines))
    print("\n".join(lines))
    print(f"written: {os.path.join(folder, stem + '.json')}, {os.path.join(folder, stem + '.md')}")

"""The design documents' claims C1-C7, each measured on the findings sweeps and given a verdict
(ftbench.verdicts). claims(sweeps, n_resamples) returns, per claim, its rows for the verdict table and the
details for its own section of docs/findings.md."""

from __future__ import annotations

from ftbench import verdicts
from ftbench.machine_load import timing_conditions, timing_setups
from ftbench.paired import compare_pairs, figure_on_test, runs_by_seed
from ftbench.report_tables import format_p, mcnemar_text, mean_std
from ftbench.run_groups import runs_in
from ftbench.run_store import boot_setup, peak_memory, precision_of, train_time
from ftbench.sweep_presets import PRESETS
from ftbench.verdicts import NOT_MEASURED, Interval

# The findings sweeps' presets (benchmark.py --preset NAME), which are also their folders' names.
SST2, SST2_DOC_RATE, FPB, IMDB = "findings_sst2", "findings_sst2_lora_5e-4", "findings_phrasebank", "findings_imdb"
DIFFERS = ("the model is all-MiniLM-L6-v2 (22.7M parameters, 6 layers, 384 wide) instead of DistilBERT, BERT-base "
           "or klue/roberta-base; training is on a 2-core CPU, not on a GPU, in bf16 autocast where the CPU has it and "
           "fp32 where not (the sweeps table says which); "
           "each method's learning rate was chosen on validation (one seed) instead of fixed, batch 32")


def accuracy_comparisons(groups: dict, reference: str, n_resamples: int) -> dict:
    """{label: comparison with the reference} for every other group with two or more seeds, p-values
    Holm-adjusted over these comparisons together (the sweep's family)."""
    if len(groups.get(reference, [])) < 2:
        return {}
    pairs = [(label, reference) for label, runs in groups.items() if label != reference and len(runs) >= 2]
    results = {label: result for label, result in compare_pairs(groups, pairs, n_resamples).items()
               if "error" not in result}
    for result in results.values():
        boot = result["bootstrap"]
        result["interval"] = Interval(100 * boot["difference"], 100 * boot["ci_low"], 100 * boot["ci_high"], "points")
    return results


def seed_pairs(runs: list[dict], reference: list[dict], setup_of=None) -> tuple[list[tuple], int]:
    """(run, reference run) of each seed both have, and how many were left out because, where setup_of is given
    (run_store.boot_setup), the two runs' setups differ or one has none."""
    ours, theirs = runs_by_seed(runs), runs_by_seed(reference)
    pairs = [(ours[seed], theirs[seed]) for seed in ours if seed in theirs]
    kept = [(a, b) for a, b in pairs if setup_of is None or same_setup(setup_of(a), setup_of(b))]
    return kept, len(pairs) - len(kept)


def same_setup(setup, other) -> bool:
    """Whether two runs' setups are known and equal (a run without one pairs with nothing)."""
    return setup is not None and setup == other


def seed_paired(pairs: list[tuple], value, relative: bool) -> tuple[Interval, int] | None:
    """The per-seed differences value(run) - value(reference run), in percent of the reference where relative:
    their mean and 95% Student-t interval, and how many seeds; None under two seeds."""
    from ftbench import stats

    values = [(value(a), value(b)) for a, b in pairs]
    differences = [100 * (a - b) / b if relative else a - b for a, b in values if a is not None and b is not None]
    summary = stats.summarize(differences)
    if summary["n"] < 2:
        return None
    return Interval(summary["mean"], summary["ci_low"], summary["ci_high"], "percent" if relative else "loss"), \
        summary["n"]


def _mean_std(runs: list[dict], value, spec: str) -> str:
    from ftbench import stats

    return mean_std(stats.summarize([value(run) for run in runs]), spec)


def accuracy(run: dict) -> float | None:
    value = figure_on_test(run, "accuracy")
    return None if value is None else 100 * value


def final_gap(run: dict) -> float | None:
    return run["train_info"].get("final_generalization_gap")


def selected_gap(run: dict) -> float | None:
    step = (run["train_info"].get("selection") or {}).get("best_step")
    return next((h.get("generalization_gap") for h in run["train_info"].get("history") or [] if h["step"] == step),
                None)


def train_time_per_epoch(run: dict) -> float | None:
    """Train time over the epochs trained: the documents' time comparison, made at equal epochs, where the methods
    trained different numbers of epochs (each until its validation accuracy stopped rising)."""
    seconds, epochs = train_time(run), run["train_info"].get("epochs")
    return seconds / epochs if seconds is not None and epochs else None


def epochs_trained(groups: dict, labels: list[str]) -> str:
    """'3 epochs (full), 8 (lora, prefix)', from the runs of these labels; '' before any."""
    by_epochs: dict = {}
    for label in labels:
        for epochs in dict.fromkeys(f"{run['train_info']['epochs']:g}" for run in groups.get(label) or []):
            by_epochs.setdefault(epochs, []).append(label)
    parts = [f"{epochs}{' epochs' if k == 0 else ''} ({', '.join(named)})"
             for k, (epochs, named) in enumerate(by_epochs.items())]
    return ", ".join(parts)


def imdb_budget(groups: dict) -> str:
    """The reviews the IMDb sweep trained and tested on, from its runs' recorded split sizes (before any, its
    preset's options): '5,000 of the 22,500 training reviews for 2 epochs, ...'."""
    runs = runs_in(groups)
    if not runs:
        return f"its preset's `{PRESETS[IMDB].run_args}`"
    data = runs[0]["run_info"]["data"]
    used, whole = data["split_sizes"], data["split_sizes_before_subsetting"]
    return (f"{used['train']:,} of the {whole['train']:,} training reviews for {epochs_trained(groups, list(groups))}"
            f", {used['validation']:,} of {whole['validation']:,} for validation and {used['test']:,} of "
            f"{whole['test']:,} for test, at {runs[0]['run_info']['config']['data']['max_seq_length']} tokens")


def instead_of_ten(groups: dict, labels: list[str]) -> str:
    trained = epochs_trained(groups, labels)
    return f"; {trained} instead of the documents' 10" if trained else ""


def precisions_apart(groups: dict, label: str, reference: str) -> str:
    """'; lora (lr 5e-4) trained in fp32, full in bf16' where the two groups' runs trained in different precisions
    (sweeps run on different machines), else ''."""
    ours, theirs = ("/".join(sorted({precision_of(run) for run in groups[name]})) for name in (label, reference))
    return "" if ours == theirs else f"; {label} trained in {ours}, {reference} in {theirs}"


def accuracy_row(what: str, label: str, reference: str, groups: dict, comparisons: dict, verdict_of) -> dict:
    """A row of a claim: the method against the reference on test accuracy."""
    result = comparisons.get(label)
    if result is None:
        return {"what": what, "measured": "fewer than two seeds measured", "verdict": NOT_MEASURED, "detail": None}
    boot = result["bootstrap"]
    resolution = 1 / boot["n_resamples"]
    measured = result["interval"].text() + precisions_apart(groups, label, reference)
    return {"what": what, "measured": measured, "verdict": verdict_of(result["interval"]),
            "detail": f"| {what} | {_mean_std(groups[label], accuracy, '.2f')} | "
                      f"{_mean_std(groups[reference], accuracy, '.2f')} | {measured} | "
                      f"{format_p(boot['p_value'], resolution)} (Holm {format_p(result['holm_p'], resolution)}) | "
                      f"{mcnemar_text(result)} | {verdict_of(result['interval'])} |"}


def paired_row(what: str, runs: list | None, reference: list | None, value, relative: bool, claimed_sign: int,
               spec: str, setup_of=None) -> dict:
    """A row of a claim on time, memory or the gap: per-seed paired differences; for time and memory, only of
    seeds whose two runs have one setup_of (seed_pairs)."""
    pairs, left_out = seed_pairs(runs or [], reference or [], setup_of)
    measured = seed_paired(pairs, value, relative)
    apart = f"; {left_out} seed(s) left out, their runs trained on different machines (or boots) or precisions" \
        if left_out else ""
    if measured is None:
        return {"what": what, "measured": f"fewer than two seeds measured{apart}", "verdict": NOT_MEASURED,
                "detail": None}
    interval, n = measured
    verdict = verdicts.directional(interval, claimed_sign)
    return {"what": what, "measured": interval.text(), "verdict": verdict,
            "detail": f"| {what} | {_mean_std(runs, value, spec)} | {_mean_std(reference, value, spec)} | "
                      f"{interval.text()} | – | {n} seeds paired{apart} | {verdict} |"}


DETAIL_HEADER = ["| comparison | method (mean ± std) | reference (mean ± std) | difference [95% interval] | "
                 "bootstrap p | McNemar p per seed (discordant: method right / reference right) | verdict |",
                 "|---|---|---|---|---|---|---|"]


def claim(claim_id: str, text: str, documents: str, rows: list[dict], differs: str) -> dict:
    """A claim from its rows (each made by needing(), so that a row not measured yet names its sweeps' commands)."""
    details = [row["detail"] for row in rows if row["detail"]]
    lines = DETAIL_HEADER + details + [""] if details else []
    missing = [row for row in rows if row["verdict"] == NOT_MEASURED]
    if missing:
        commands = dict.fromkeys(command for row in missing for command in row["needs"])
        lines += [f"Not measured yet: {', '.join(row['what'] for row in missing)}; run `{'`, `'.join(commands)}`.",
                  ""]
    return {"id": claim_id, "claim": text, "documents": documents, "rows": rows, "details": lines,
            "differs": differs}


def sweep_command(preset: str) -> str:
    """The command that makes (or resumes) a findings sweep."""
    return f"python benchmark.py --preset {preset} --data_dir ../shared/data"


def needing(row: dict, *presets: str) -> dict:
    """The row, with the commands of the sweeps that measure it."""
    return {**row, "needs": [sweep_command(preset) for preset in presets]}


def _memory(run: dict) -> float | None:
    return peak_memory(run)[0]


def close(margin: float):
    return lambda interval: verdicts.alike(interval, margin)


def lower(interval: Interval) -> str:
    return verdicts.directional(interval, -1)


def sst2_lora_rows(sst2: dict, sst2_cmp: dict, margin: float) -> list[dict]:
    """LoRA against full on SST-2 at its searched rate and at the documents' 5e-4, alike within margin points."""
    return [needing(accuracy_row("SST-2, LoRA at its chosen rate vs full", "lora", "full", sst2, sst2_cmp,
                                 close(margin)), SST2),
            needing(accuracy_row("SST-2, LoRA at 5e-4 vs full", "lora (lr 5e-4)", "full", sst2, sst2_cmp,
                                 close(margin)), SST2, SST2_DOC_RATE)]


def accuracy_claims(sst2: dict, sst2_cmp: dict, fpb: dict, fpb_cmp: dict, imdb: dict, imdb_cmp: dict) -> list[dict]:
    c1 = claim("C1", "LoRA comes close to full fine-tuning on SST-2", "DistilBERT, 10 epochs, lr 1e-5 (full) and "
               "5e-4 (LoRA); no LoRA figure given", sst2_lora_rows(sst2, sst2_cmp, verdicts.CLOSE_MARGIN_POINTS),
               DIFFERS + instead_of_ten(sst2, ["full", "lora", "lora (lr 5e-4)"]))
    c3 = claim("C3", "LoRA is within the error range of full fine-tuning", "NSMC, klue/roberta-base: 90.56 (full) vs "
               "90.39 (LoRA), -0.17 points", sst2_lora_rows(sst2, sst2_cmp, verdicts.EQUAL_MARGIN_POINTS) + [
                   needing(accuracy_row("Financial PhraseBank, LoRA vs full", "lora", "full", fpb, fpb_cmp,
                                        close(verdicts.EQUAL_MARGIN_POINTS)), FPB)],
               DIFFERS + "; NSMC needs a Korean model the offline machines lack, so the claim is tested on SST-2 and "
               "Financial PhraseBank (the NSMC preset stays for GPU users)")
    c5 = claim("C5", "Prefix tuning matches full fine-tuning on SST-2", "BERT-base, 10 epochs, batch 16, lr 1e-6: "
               "88.11 (prefix) vs 88.07 (full)", [
                   needing(accuracy_row("SST-2, prefix vs full", "prefix", "full", sst2, sst2_cmp,
                                        close(verdicts.EQUAL_MARGIN_POINTS)), SST2)],
               DIFFERS + instead_of_ten(sst2, ["full", "prefix"]))
    c6 = claim("C6", "On long reviews (IMDb, 256 tokens) LoRA and prefix tuning cost about 2.3 points",
               "DistilBERT: 92.2 (full) vs 89.9 (LoRA); BERT-base: 93.09 (full) vs 90.79 (prefix)", [
                   needing(accuracy_row("IMDb, LoRA vs full", "lora", "full", imdb, imdb_cmp, lower), IMDB),
                   needing(accuracy_row("IMDb, prefix vs full", "prefix", "full", imdb, imdb_cmp, lower), IMDB)],
               DIFFERS + f"; a CPU budget: {imdb_budget(imdb)}, instead of all 25,000 training reviews for 3 epochs: "
               "it leaves open whether the gap closes or widens with the full training set")
    return [c1, c3, c5, c6]


def cost_claims(sst2: dict, fpb: dict) -> list[dict]:
    rows = []
    for name, groups, preset in (("SST-2", sst2, SST2), ("Financial PhraseBank", fpb, FPB)):
        lora, full = groups.get("lora"), groups.get("full")
        rows += [needing(paired_row(f"{name}, LoRA vs full, peak memory", lora, full, _memory, True, -1, ",.0f",
                                    boot_setup), preset),
                 needing(paired_row(f"{name}, LoRA vs full, train time per epoch", lora, full, train_time_per_epoch,
                                    True, -1, ",.1f", boot_setup), preset)]
    sst2_epochs = epochs_trained(sst2, ["full", "lora"])
    cost_runs = [run for groups in (sst2, fpb) for method in ("lora", "full") for run in groups.get(method) or []]
    c2 = claim("C2", "LoRA needs less memory and time than full fine-tuning", "SST-2: -38% memory, -13% time; "
               "NSMC: -40% VRAM, -27% time", rows,
               DIFFERS + "; memory here is the process's peak resident memory on the CPU, of which weights, "
               "gradients and optimizer state are a smaller share than of a GPU's allocated memory (the Python "
               "process, libraries and activations are in it too); time is compared per epoch, as the documents "
               "compared it at equal epochs (where LoRA trained more epochs than full, its whole train time is in the "
               "tables under a limit)" + (f", on SST-2 {sst2_epochs}" if sst2_epochs else "") + "; "
               + timing_conditions(cost_runs) + "; trained on " + timing_setups(cost_runs))
    gap_rows = []
    for name, groups, preset in (("SST-2", sst2, SST2), ("Financial PhraseBank", fpb, FPB)):
        lora, full = groups.get("lora"), groups.get("full")
        gap_rows += [needing(paired_row(f"{name}, final gap, LoRA - full", lora, full, final_gap, False, -1, ".4f"),
                             preset),
                     needing(paired_row(f"{name}, gap at the selected checkpoint, LoRA - full", lora, full,
                                        selected_gap, False, -1, ".4f"), preset)]
    c4 = claim("C4", "LoRA generalises better (a smaller gap between validation and training loss)",
               "NSMC: gap 0.1618 (full) vs 0.0154 (LoRA)", gap_rows,
               DIFFERS + "; the gap is the final validation loss minus the training loss (mean over the steps since "
               "the previous evaluation), as the documents took it, and also at the checkpoint that was selected")
    return [c2, c4]


def template_claim(fpb: dict) -> dict:
    from ftbench.registry import method_names

    seeded = {label: runs for label, runs in fpb.items() if len(runs) >= 2}  # a label such as mlm+full names a method
    measured = sorted({run["run_info"]["method"] for run in runs_in(seeded)} & set(method_names()))
    complete = all(figure_on_test(r, "f1_macro") is not None and r["train_info"].get("history")
                   for r in runs_in(seeded))
    verdict = verdicts.CONFIRMED if len(measured) == len(method_names()) and complete else NOT_MEASURED
    row = {"what": "Financial PhraseBank, every method", "verdict": verdict, "detail": None,
           "measured": f"{len(measured)} of {len(method_names())} methods with 2 or more seeds: trainable parameters, "
                       "peak memory, time, accuracy, macro-F1 and learning curves for each (tables below)"}
    return claim("C7", "One table of every method: parameters, peak memory, time, accuracy, F1, learning curves",
                 "a template with feature extraction, full, continued pre-training + fine-tuning, LoRA/QLoRA, prompt "
                 "tuning, adapters and prefix tuning, and no numbers", [needing(row, FPB)],
                 DIFFERS + "; the suite adds BitFit, LN tuning, DoRA, AdaLoRA, VeRA, IA3 and P-tuning")


def sst2_groups(sweeps: dict) -> dict:
    """SST-2's groups: the main sweep's, and LoRA at the documents' rate as 'lora (lr 5e-4)'."""
    return {**sweeps["sst2"].groups, **{f"{k} (lr 5e-4)": v for k, v in sweeps["sst2_doc_rate"].groups.items()}}


def claims(sweeps: dict, n_resamples: int) -> list[dict]:
    """Every claim, measured on the loaded sweeps ({key: LoadedSweep})."""
    sst2 = sst2_groups(sweeps)
    fpb, imdb = sweeps["phrasebank"].groups, sweeps["imdb"].groups
    compared = {key: accuracy_comparisons(groups, "full", n_resamples) for key, groups in
                (("sst2", sst2), ("fpb", fpb), ("imdb", imdb))}
    c1, c3, c5, c6 = accuracy_claims(sst2, compared["sst2"], fpb, compared["fpb"], imdb, compared["imdb"])
    c2, c4 = cost_claims(sst2, fpb)
    return [c1, c2, c3, c4, c5, c6, template_claim(fpb)]

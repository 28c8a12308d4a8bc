"""How runs are grouped for comparison: by data set, model and method label (and, on request, by the value of
any other setting), with notes on what a group's runs differ in besides the seed."""

from __future__ import annotations

from ftbench.run_store import label_of, model_short, started

# Settings that differ between the seeds of one comparison by design, and so do not split a group.
PER_RUN_SETTINGS = {("training", "seed"), ("training", "run_name"), ("training", "output_dir")}


class GroupingError(ValueError):
    """A setting to split by that the runs do not have: one line naming those they have."""


def settings_of(run: dict) -> dict:
    """The run's resolved options, flattened, without those that differ between seeds by design."""
    config = run["run_info"].get("config") or {}
    return {f"{section}.{key}": value for section, values in config.items() if isinstance(values, dict)
            for key, value in values.items() if (section, key) not in PER_RUN_SETTINGS}


def split_value(run: dict, key: str):
    """The value of a setting of the run: a resolved option (training.precision), or what the speed options
    resolved to on its device (pipeline.precision)."""
    if key.startswith("pipeline."):
        pipeline = run["train_info"].get("pipeline") or {}
        if key[len("pipeline."):] in pipeline:
            return pipeline[key[len("pipeline."):]]
    settings = settings_of(run)
    if key not in settings:
        raise GroupingError(f"--split_by {key} is not a setting of run {run['run_info'].get('run_id')}; use one "
                            f"of its settings (e.g. training.precision, data.max_seq_length) or pipeline.<key> "
                            f"(e.g. pipeline.precision)")
    return settings[key]


def group_label(run: dict, split_by: list[str]) -> str:
    """The method label, then each split setting as (name=value): 'lora (precision=bf16)'."""
    return label_of(run) + "".join(f" ({key.rsplit('.', 1)[-1]}={split_value(run, key)})" for key in split_by)


def group_runs(runs: list[dict], split_by: list[str] | tuple = ()) -> tuple[dict, list[str]]:
    """{(dataset, model, label): runs sorted by seed}, and notes on what was set aside or differs."""
    groups: dict[tuple, list] = {}
    notes = []
    for run in sorted(runs, key=started):
        info = run["run_info"]
        groups.setdefault((info["dataset"], model_short(run), group_label(run, split_by)), []).append(run)
    for key, members in groups.items():
        by_seed = {}
        for run in members:  # newest last, so a repeated seed keeps its newest run
            by_seed[run["run_info"].get("seed")] = run
        if len(by_seed) < len(members):
            notes.append(f"{'/'.join(key)}: {len(members) - len(by_seed)} older run(s) of a seed that was run again "
                         "left out")
        groups[key] = [by_seed[s] for s in sorted(by_seed, key=lambda s: (s is None, s))]
        settings = [settings_of(r) for r in groups[key]]
        differing = sorted({k for s in settings for k in s if any(o.get(k) != s.get(k) for o in settings)})
        if differing:
            notes.append(f"{'/'.join(key)}: its runs differ in {', '.join(differing)} besides the seed")
    return groups, notes


def runs_in(groups: dict) -> list[dict]:
    """Every run of the groups ({label: runs}), group after group."""
    return [run for runs in groups.values() for run in runs]

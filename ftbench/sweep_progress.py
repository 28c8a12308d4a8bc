"""A sweep's progress as benchmark.py prints it: which cell, how far, the time so far and an estimate of the rest.

    progress = Progress(total_cells)
    progress.start(cell, remaining_cells)    # [3/9] lora · tweets · minilm · seed 1 (run); elapsed ...; remaining ≈ ...
    progress.finish(cell, seconds)
"""

from __future__ import annotations

import time

from ftbench.run_store import wall_time
from ftbench.sweep_cells import Cell


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Which cell, how far, time so far and an estimate of what remains: the mean time of cells of the same kind
    and method (else of the same kind, else of any), from cells run in this invocation and runs completed before."""

    def __init__(self, total: int, at_once: int = 1):
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.at_once = at_once  # cells running side by side (--parallel): the estimate divides by it
        self.durations: dict[tuple[str, str], list[float]] = {}  # (kind, method): seconds per cell

    def cell_seconds(self, cell: Cell) -> float:
        """The mean time of the timed cells most like this one."""
        same_method = self.durations.get((cell.kind, cell.method))
        same_kind = [t for (kind, _), ts in self.durations.items() if kind == cell.kind for t in ts]
        times = same_method or same_kind or [t for ts in self.durations.values() for t in ts]
        return sum(times) / len(times)

    def estimate(self, remaining: list[Cell]) -> str:
        if not self.durations:
            return "remaining: estimated after the first cell"
        return f"remaining ≈ {clock(sum(self.cell_seconds(c) for c in remaining) / self.at_once)}"

    def start(self, cell: Cell, remaining: list[Cell]) -> None:
        self.done += 1
        what = f"lr {cell.learning_rate:g} search" if cell.kind == "lr_search" else \
            f"Optuna trial {cell.trial}" if cell.kind == "trial" else "run"
        print(f"[{self.done}/{self.total}] {cell.method} · {cell.dataset} · {cell.model} · seed {cell.seed} ({what}); "
              f"elapsed {clock(time.monotonic() - self.started)}; {self.estimate(remaining)}", flush=True)

    def skip(self, cell: Cell, run: dict) -> None:
        self.done += 1
        wall_time_s, _ = wall_time(run)
        if wall_time_s:
            self.durations.setdefault((cell.kind, cell.method), []).append(wall_time_s)
        print(f"[{self.done}/{self.total}] {cell.cell_id}: already completed ({run['run_info']['run_id']}), skipped",
              flush=True)

    def skip_trials(self, count: int, group: str) -> None:
        if count:
            self.done += count
            print(f"[{self.done}/{self.total}] {group}: {count} Optuna trial(s) already finished, kept", flush=True)

    def finish(self, cell: Cell, seconds: float) -> None:
        """seconds: the cell's, over all its processes where it was resumed (benchmark.cell_wall_time)."""
        self.durations.setdefault((cell.kind, cell.method), []).append(seconds)

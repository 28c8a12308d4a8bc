"""How busy the machine was with other work while a run trained: a time measured beside a test suite or another
run is not a quiet machine's time, and the run should say so rather than leave it to be guessed.

The rule: the CPU time the whole machine spent busy (Linux /proc/stat: user, nice, system, irq, softirq, steal),
less the run's own CPU time (this process's threads, and its child processes: data-loading workers, compiler
workers, live or ended), over the training's wall-clock time, is the mean number of cores other processes kept
busy. On a machine whose /proc/stat counts more than this one (a container
sees the host's), it counts the host's other work too.

    start = cpu_counters()            # at the start of training
    ...
    load = LoadTally(); load.add(start, cpu_counters())
    load.record(cores)                # train_info.machine_load
"""

from __future__ import annotations

import os
import resource
import time

from ftbench.run_store import boots_of, timing_setup

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal (guest time is inside user)
NOTE_ABOVE_CORES = 0.25  # other work above this many cores on average is called out in the run's summary


def cpu_counters() -> tuple[float, float, float] | None:
    """(wall clock s, machine busy CPU s, this process's CPU s), or None where /proc/stat is not readable."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()[1:]
    except OSError:
        return None
    ticks = sum(int(fields[index]) for index in BUSY_FIELDS if index < len(fields))
    return time.monotonic(), ticks / os.sysconf("SC_CLK_TCK"), own_cpu_s()


def own_cpu_s() -> float:
    """CPU seconds of this process, its ended children (getrusage) and its live descendants (/proc)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total + sum(process_cpu_s(pid) for pid in live_descendants(os.getpid()))


def live_descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as handle:
                    children = [int(child) for child in handle.read().split()]
            except OSError:
                continue
            found += children
            queue += children
    return found


def process_cpu_s(pid: int) -> float:
    """A live process's own user and system CPU seconds (/proc/<pid>/stat), 0 if it has just ended."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class LoadTally:
    """Sums over the training segments of a run (a resumed run adds its segments)."""

    def __init__(self, saved: dict | None = None):
        saved = saved or {}
        self.wall_s = saved.get("wall_s", 0.0)
        self.other_cpu_s = saved.get("other_cpu_s", 0.0)
        self.measured = saved.get("measured", True)

    def add(self, start: tuple | None, end: tuple | None) -> None:
        if start is None or end is None:
            self.measured = False
            return
        self.wall_s += end[0] - start[0]
        self.other_cpu_s += max(0.0, (end[1] - start[1]) - (end[2] - start[2]))

    def including(self, start: tuple | None, end: tuple | None) -> LoadTally:
        """A copy with one more segment: what a checkpoint saved mid-segment carries."""
        tally = LoadTally(self.state_dict())
        tally.add(start, end)
        return tally

    def state_dict(self) -> dict:
        return {"wall_s": self.wall_s, "other_cpu_s": self.other_cpu_s, "measured": self.measured}

    def record(self, cores: int) -> dict | None:
        if not self.measured or self.wall_s <= 0:
            return None
        return {"other_processes_cores": round(self.other_cpu_s / self.wall_s, 3), "cores": cores,
                "rule": "mean cores other processes kept busy during training: machine busy CPU time (/proc/stat) "
                        "less this process's, over the training's wall time"}


def load_note(machine_load: dict | None) -> str | None:
    """One line for the run's summary when other work shared the machine."""
    if not machine_load or machine_load["other_processes_cores"] <= NOTE_ABOVE_CORES:
        return None
    return (f"note: other processes kept {machine_load['other_processes_cores']:.2f} of {machine_load['cores']} "
            f"cores busy during training (train_info.machine_load): its times are not a quiet machine's")


def timing_conditions(runs: list[dict]) -> str:
    """In words: how many of these runs trained on a quiet machine, beside other work (and how much at most), or
    without the record (runs from before train_info.machine_load existed)."""
    loads = [(run["train_info"].get("machine_load") or {}).get("other_processes_cores") for run in runs]
    quiet = sum(load is not None and load <= NOTE_ABOVE_CORES for load in loads)
    busy = [load for load in loads if load is not None and load > NOTE_ABOVE_CORES]
    unknown = sum(load is None for load in loads)
    parts = [f"{quiet} on a quiet machine (other work at most {NOTE_ABOVE_CORES} cores on average)"]
    if busy:
        parts.append(f"{len(busy)} beside other work (up to {max(busy):.2f} cores on average)")
    if unknown:
        parts.append(f"{unknown} without the record (trained before train_info.machine_load existed)")
    return f"of these {len(runs)} runs' train times, " + ", ".join(parts)


def timing_setups(runs: list[dict]) -> str:
    """In words: the machines and precisions the runs trained on (run_store.timing_setup), with how many runs each,
    and in how many boots where the runs recorded them (one CPU name can be different hosts)."""
    by_setup: dict = {}
    for run in runs:
        by_setup.setdefault(timing_setup(run), []).append(run)

    def described(setup: str, group: list) -> str:
        boots = len({boot for run in group for boot in boots_of(run) if boot})
        return (f"{setup} ({len(group)} run{'s' if len(group) > 1 else ''}"
                + (f", {boots} boot{'s' if boots > 1 else ''})" if boots else ")"))

    return ", ".join(described(setup, by_setup[setup]) for setup in sorted(by_setup)) or "no runs"

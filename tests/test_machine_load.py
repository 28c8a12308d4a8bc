"""train_info.machine_load: how busy other processes kept the machine while a run trained."""

import subprocess
import sys
import time

import pytest

from ftbench.machine_load import LoadTally, cpu_counters, load_note, own_cpu_s, process_cpu_s, timing_conditions


def test_other_work_is_the_machine_s_busy_time_less_the_run_s_own():
    tally = LoadTally()
    # 10 s of wall time; the machine was busy 30 CPU-seconds, 15 of them this process's: 1.5 cores of other work.
    tally.add((0.0, 100.0, 10.0), (10.0, 130.0, 25.0))
    assert tally.record(2)["other_processes_cores"] == 1.5
    # A resumed run adds its next segment: 5 s more, 2 CPU-seconds of others'.
    resumed = LoadTally(tally.state_dict())
    resumed.add((50.0, 200.0, 40.0), (55.0, 212.0, 50.0))
    assert resumed.record(2)["other_processes_cores"] == round(17 / 15, 3)
    # A checkpoint taken mid-segment carries the segment so far, without changing the tally.
    assert tally.including((0.0, 0.0, 0.0), (2.0, 1.0, 1.0)).state_dict() == {
        "wall_s": 12.0, "other_cpu_s": 15.0, "measured": True}
    assert tally.state_dict()["wall_s"] == 10.0
    # Unmeasured segments (no /proc/stat, or a checkpoint from before this existed) make the figure unknown.
    unknown = LoadTally({"measured": False})
    unknown.add((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert unknown.record(2) is None
    assert load_note(None) is None
    assert load_note({"other_processes_cores": 0.25, "cores": 2}) is None
    assert load_note({"other_processes_cores": 1.5, "cores": 2}) == (
        "note: other processes kept 1.50 of 2 cores busy during training (train_info.machine_load): its times are "
        "not a quiet machine's")


BURN_ONE_CPU_SECOND = "import time\nwhile time.process_time() < 1: pass\nopen({done!r}, 'w').close()"


def test_a_process_that_is_not_the_run_s_counts_as_other_work(tmp_path):
    """Bounds that hold however busy the machine is: other work only adds to other work."""
    start = cpu_counters()
    if start is None:
        pytest.skip("no /proc/stat here")
    done = tmp_path / "done"
    # Started through a shell that exits at once: the busy process is not this process's descendant.
    subprocess.run(["sh", "-c", f"{sys.executable} -c \"$0\" &", BURN_ONE_CPU_SECOND.format(done=str(done))],
                   check=True)
    while not done.exists():
        time.sleep(0.05)
    tally = LoadTally()
    tally.add(start, cpu_counters())
    assert tally.other_cpu_s >= 0.9


def test_the_run_s_own_child_processes_are_its_own_work(tmp_path):
    before = own_cpu_s()
    subprocess.run([sys.executable, "-c", BURN_ONE_CPU_SECOND.format(done=str(tmp_path / "done"))], check=True)
    assert own_cpu_s() - before >= 0.9  # an ended child, through getrusage(RUSAGE_CHILDREN)
    child = subprocess.Popen([sys.executable, "-c", "import time\nwhile time.process_time() < 0.5: pass\n"
                              "time.sleep(60)"])
    try:
        while process_cpu_s(child.pid) < 0.45:
            time.sleep(0.05)
        assert own_cpu_s() - before >= 1.4  # and a live one, through /proc
    finally:
        child.kill()
        child.wait()


def test_a_completed_run_records_the_machine_s_other_work(trained_runs):
    import json
    import os

    info = json.load(open(os.path.join(trained_runs["lora"], "results.json")))["train_info"]
    load = info["machine_load"]
    assert set(load) == {"other_processes_cores", "cores", "rule"}
    assert load["cores"] == os.cpu_count()
    assert 0 <= load["other_processes_cores"] <= load["cores"]


def test_the_findings_say_how_many_train_times_a_quiet_machine_measured():
    def run(load):
        return {"train_info": {"machine_load": None if load is None else {"other_processes_cores": load}}}

    assert timing_conditions([run(0.1), run(1.3), run(None), run(0.25), run(0.7)]) == (
        "of these 5 runs' train times, 2 on a quiet machine (other work at most 0.25 cores on average), 2 beside "
        "other work (up to 1.30 cores on average), 1 without the record (trained before train_info.machine_load "
        "existed)")

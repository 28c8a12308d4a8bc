"""A run's wall time over all its processes (run_store.wall_time, earlier_wall_time_s, the phase clock and a
sweep cell's record), on hand-made records with exact expected values: runs resumed after interruptions that
recorded their time, and runs with a process whose time is unknown (a lower bound)."""

from ftbench.finish import PhaseClock
from ftbench.run_store import earlier_wall_time_s, wall_time
from ftbench.sweep_manifest import cell_wall_time


def run(wall: float, phases: dict, resumes: int = 0, train: float = 50.0, evaluation: float = 5.0) -> dict:
    return {"run_info": {"resumes": [{"from_status": "interrupted"}] * resumes},
            "train_info": {"wall_time_s": wall, "wall_time_breakdown_s": phases, "train_time_s": train,
                           "eval_time_s": evaluation}}


def test_earlier_processes_are_known_only_from_an_interrupted_record():
    interrupted = {"train_info": {"wall_time_s": 41.5}}
    assert earlier_wall_time_s(interrupted, "interrupted") == 41.5
    # Killed without a word: the interrupted record before it (if any) misses the killed process's time.
    assert earlier_wall_time_s(interrupted, "unfinished") is None
    assert earlier_wall_time_s({"train_info": {"stopped_at_step": 3}}, "interrupted") is None  # an older record


def test_two_interruptions_add_up_once_each():
    first = PhaseClock(0.0)
    first.last = 30.0  # what elapsed_s reads at the stop, here set by hand
    stopped_once = {"train_info": {"wall_time_s": first.earlier_processes_s + first.last - first.start}}
    second = PhaseClock(100.0)
    second.earlier_processes_s = earlier_wall_time_s(stopped_once, "interrupted")
    second.last = 120.0
    stopped_twice = {"train_info": {"wall_time_s": second.earlier_processes_s + second.last - second.start}}
    third = PhaseClock(200.0)
    third.earlier_processes_s = earlier_wall_time_s(stopped_twice, "interrupted")
    third.last = 210.0
    third.phases = {"testing": 10.0}
    assert third.record() == {"wall_time_s": 60.0, "wall_time_breakdown_s": {"earlier_processes": 50.0,
                                                                             "testing": 10.0}}


def test_a_run_s_wall_time_adds_its_earlier_processes_or_says_it_is_a_lower_bound():
    phases = {"start_up_and_imports": 10.0, "training": 20.0, "evaluation": 2.0, "testing": 3.0}
    assert wall_time(run(35.0, phases)) == (35.0, True)  # never resumed
    assert wall_time(run(75.0, {"earlier_processes": 40.0} | phases, resumes=1)) == (75.0, True)
    # Resumed, earlier processes unknown: they trained 50 - 20 s and evaluated 5 - 2 s; their start-up is missing.
    assert wall_time(run(35.0, phases, resumes=1)) == (35.0 + 30.0 + 3.0, False)
    # A continued pre-training of 12 s that an earlier process finished and this one reused counts too.
    reused = run(35.0, phases | {"mlm_pretraining": 0.01}, resumes=1)
    reused["train_info"]["pretraining"] = {"train_time_s": 12.0}
    assert wall_time(reused) == (35.0 + 30.0 + 3.0 + 12.0, False)
    assert wall_time({"run_info": {}, "train_info": {}}) == (None, False)


def test_a_sweep_cell_takes_its_run_s_time_else_its_process_s():
    phases = {"training": 20.0, "evaluation": 2.0}
    assert cell_wall_time(run(75.0, {"earlier_processes": 40.0} | phases, resumes=1), 35.2) == (75.0, True)
    assert cell_wall_time(run(35.0, phases, resumes=1), 35.2) == (35.0 + 30.0 + 3.0, False)
    assert cell_wall_time(None, 12.34) == (12.3, True)  # a failed cell: its process
    assert cell_wall_time(None, None) == (None, False)


def test_the_phase_clock_counts_earlier_processes_as_a_phase():
    clock = PhaseClock(100.0)
    clock.earlier_processes_s = 40.0
    clock.last = 135.0
    clock.phases = {"training_loop": 30.0, "testing": 5.0}
    clock.split_training(25.0, 3.0)
    assert clock.record() == {"wall_time_s": 75.0, "wall_time_breakdown_s": {
        "earlier_processes": 40.0, "testing": 5.0, "training": 25.0, "evaluation": 3.0,
        "checkpoints_and_callbacks": 2.0}}
    clock.earlier_processes_s = None  # unknown: this process alone, for run_store.wall_time to bound
    assert clock.record()["wall_time_s"] == 35.0 and clock.elapsed_s() is None

"""Experiment trackers through the Trainer's own report_to (--report_to tensorboard trackio ...).

The Trainer builds the trackers' callbacks from TrainingArguments.report_to; attach() moves them behind one relay
that passes every event on except two: the end of training, which waits until the suite's summary (test figures,
parameters, memory, time, MFU, gap) is logged too, and prediction, whose figures (the test split, the selected
checkpoint's check) the summary carries once, under clear names.

    relay = attach(trainer, run_dir, run_info)    # None with --report_to none; sets run_info["tracking"]
    relay.log_summary(trainer, train_info)         # after testing
    relay.end(trainer)                             # however the run ended
"""

from __future__ import annotations

import importlib.util
import os

from ftbench.errors import ConfigError
from ftbench.run_store import peak_memory_key

# --report_to's choices: the tracker's name in transformers, and the package it needs.
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "trackio": "trackio", "mlflow": "mlflow", "wandb": "wandb"}
TENSORBOARD_DIR = "tensorboard"  # in the run folder
TRACKING_PROJECT = "ftbench"  # trackio's project (TrainingArguments.project): the suite's runs side by side


def check_report_to(names: list[str]) -> None:
    """Refuse, in one line, a tracker the suite does not offer, 'none' mixed with trackers, or a missing package."""
    if names == ["none"]:
        return
    if "none" in names:
        raise ConfigError(f"--report_to {' '.join(names)} mixes none with trackers; give none alone, or the trackers")
    unknown = [name for name in names if name not in TRACKER_PACKAGES]
    if unknown:
        raise ConfigError(f"--report_to {unknown[0]} is not offered; choose none or any of "
                          f"{', '.join(TRACKER_PACKAGES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--report_to names a tracker twice: {' '.join(names)}")
    for name in names:
        package = TRACKER_PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"--report_to {name} needs the {package} package: pip install {package} "
                              f"(or pip install -r requirements-tools.txt)")


def report_to(names: list[str]) -> list[str] | str:
    return "none" if names == ["none"] else list(names)


def summary_logs(info: dict) -> dict:
    """The suite's own figures of a completed run, named so that transformers files them under test/ and train/."""
    memory = info["memory"]
    peak_key = peak_memory_key(memory)
    logs = {
        "test_accuracy": info["test"]["accuracy"],
        "test_f1_macro": info["test"]["f1_macro"],
        "test_loss": info["test"]["loss"],
        "num_params_trainable": info["num_params_trainable"],
        "trainable_params_pct": info["trainable_params_pct"],
        peak_key: memory[peak_key],
        "train_time_s": info["train_time_s"],
        "train_samples_per_s": info["train_samples_per_s"],
        "final_generalization_gap": info["final_generalization_gap"],
    }
    mfu = (info.get("utilisation") or {}).get("mfu")
    if mfu is not None:
        logs["mfu"] = mfu
    return {key: value for key, value in logs.items() if value is not None}


class TrackerRelay:
    """The Trainer's tracker callbacks, held back from the end of training until the summary is logged."""

    def __init__(self, callbacks: list, run_name: str, project: str):
        self.callbacks = callbacks
        self.run_name = run_name
        self.project = project
        self.ended = False

    def where(self) -> dict:
        """Where each tracker writes this run, for results.json."""
        places = {}
        for callback in self.callbacks:
            name = tracker_name(callback)
            if name == "tensorboard":
                places[name] = {"log_dir": callback.logging_dir}
            elif name == "trackio":
                places[name] = {"project": self.project, "run": self.run_name, "db": trackio_db(self.project)}
            elif name == "mlflow":  # transformers' MLflowCallback reads these variables (unset: mlflow's defaults)
                places[name] = {"run": self.run_name, "tracking_uri": os.environ.get("MLFLOW_TRACKING_URI"),
                                "experiment": os.environ.get("MLFLOW_EXPERIMENT_NAME")}
            else:  # wandb, as transformers' WandbCallback starts it
                places[name] = {"run": self.run_name, "project": os.environ.get("WANDB_PROJECT", "huggingface")}
        return places

    def log_summary(self, trainer, info: dict) -> str | None:
        """The run's summary to every tracker; one that fails (its server, its disk) is named in the returned
        warning, not raised: the run itself completed."""
        return self.each(lambda callback: callback.on_log(trainer.args, trainer.state, trainer.control,
                                                          logs=summary_logs(info), model=trainer.model),
                         "did not take the run's summary")

    def end(self, trainer) -> str | None:
        """Close every tracker, however the run ended (once); a failure is returned as a warning, as above."""
        if self.ended:
            return None
        self.ended = True
        return self.each(lambda callback: callback.on_train_end(
            trainer.args, trainer.state, trainer.control, model=trainer.model,
            processing_class=trainer.processing_class), "did not close cleanly")

    def each(self, call, failure: str) -> str | None:
        failed = []
        for callback in self.callbacks:
            try:
                call(callback)
            except Exception as error:  # noqa: BLE001 - any tracker's own error
                failed.append(f"{tracker_name(callback)}: {type(error).__name__}: {error}")
        return f"warning: tracker(s) {failure}: {'; '.join(failed)}" if failed else None


def tracker_name(callback) -> str:
    from transformers.integrations import INTEGRATION_TO_CALLBACK

    return next(name for name, cls in INTEGRATION_TO_CALLBACK.items() if isinstance(callback, cls))


def trackio_db(project: str) -> str:
    from trackio.sqlite_storage import SQLiteStorage

    return str(SQLiteStorage.get_project_db_path(project))


# Held back from the trackers: the end of training (the summary comes after it) and predictions (the test
# split's and the selected checkpoint's check, which would be filed as training figures; the summary has the test's).
HELD_BACK_EVENTS = ("on_train_end", "on_predict")


def relay_callback(relay: TrackerRelay):
    """A TrainerCallback that passes every other event on to the trackers. (Built here: importing transformers'
    callbacks takes seconds, which the option parser, importing this module, should not pay.)"""
    from transformers import TrainerCallback

    def forward(event: str):
        def call(self, args, state, control, **kwargs):
            for callback in self.relay.callbacks:
                getattr(callback, event)(args, state, control, **kwargs)
        return call

    events = [name for name in vars(TrainerCallback) if name.startswith("on_") and name not in HELD_BACK_EVENTS]
    relay_class = type("TrackerEvents", (TrainerCallback,), {name: forward(name) for name in events})
    callback = relay_class()
    callback.relay = relay
    return callback


def attach(trainer, run_dir: str, run_info: dict) -> TrackerRelay | None:
    """Move the trackers the Trainer built from report_to behind a relay, and record where they write
    (run_info.tracking). TensorBoard writes into the run folder (the Trainer's default, under the checkpoints, is
    deleted when the run completes)."""
    from transformers.integrations import get_reporting_integration_callbacks

    callbacks = [trainer.pop_callback(cls) for cls in get_reporting_integration_callbacks(trainer.args.report_to)]
    callbacks = [callback for callback in callbacks if callback is not None]
    if not callbacks:
        return None
    for callback in callbacks:
        if tracker_name(callback) == "tensorboard":
            callback.logging_dir = os.path.join(os.path.abspath(run_dir), TENSORBOARD_DIR)
    relay = TrackerRelay(callbacks, trainer.args.run_name, trainer.args.project)
    trainer.add_callback(relay_callback(relay))
    run_info["tracking"] = relay.where()
    return relay

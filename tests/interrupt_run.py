"""Run a train_<method>.py script and signal it from inside at a chosen moment, as Ctrl-C, a scheduler's
SIGTERM or kill -9 would from outside; tests/test_robustness.py uses it to interrupt real training runs.

    python tests/interrupt_run.py METHOD WHEN STEP SIGNAL [SIGNAL ...] -- <train_<method>.py options>

WHEN: 'step' (as step STEP begins, so the signal lands mid-step), 'eval' (during the evaluation after step
STEP) or 'save' (while the checkpoint of step STEP is being written, before it is complete). Several
signals are sent one after another (SIGINT SIGINT: a second Ctrl-C).
"""

import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from transformers import TrainerCallback  # noqa: E402

from ftbench import runner  # noqa: E402


def main() -> int:
    split = sys.argv.index("--")
    method, when, step, *names = sys.argv[1:split]
    step, signals = int(step), [getattr(signal, name) for name in names]
    train_args = sys.argv[split + 1:]

    def send():
        for signum in signals:
            os.kill(os.getpid(), signum)

    class SignalAt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if when == "step" and state.global_step + 1 == step:
                send()

        def on_prediction_step(self, args, state, control, **kwargs):
            if when == "eval" and state.global_step == step and not getattr(self, "sent", False):
                self.sent = True
                send()

    build_trainer = runner.build_trainer

    def build_with_signal(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.add_callback(SignalAt())
        if when == "save":
            save_model = trainer.save_model

            def save_then_signal(*a, **k):  # the weights are written, the rest of the checkpoint is not
                save_model(*a, **k)
                if trainer.state.global_step == step:
                    send()
            trainer.save_model = save_then_signal
        return trainer

    runner.build_trainer = build_with_signal
    return runner.run(method, train_args, f"train_{method}.py")


if __name__ == "__main__":
    sys.exit(main())

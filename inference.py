"""Classify sentences with a trained run: full model, or peft adapter plus its classification head.

    python inference.py "a gripping, beautifully acted film" "a dull mess"   # newest completed run
    python inference.py --run results/runs/<run id> --file sentences.txt     # one sentence per line
    cat sentences.txt | python inference.py --method lora -                  # '-' reads standard input
    python inference.py                                                      # a few built-in examples
    python inference.py --run <run id> --verify    # re-test the reloaded model against the recorded results

--verify rebuilds the run's test split from its recorded data settings and checks that the reloaded
model reproduces the recorded test accuracy and per-example predictions: a peft head that silently
stays random after reloading would fail it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import warnings

import numpy as np
import torch

EXAMPLES = [
    "a gripping, beautifully acted film",
    "a dull mess that wastes its cast",
    "I love how smooth the new update feels",
    "the flight was delayed again and nobody told us anything",
    "the meeting is scheduled for tuesday",
]


class RunError(ValueError):
    """A run folder that cannot be used; the message names the problem and the fix."""


def find_run(run: str | None, results_dir: str, method: str | None = None, dataset: str | None = None) -> str:
    """The run folder named (a path, or a run id under results_dir/runs), else the newest completed run
    with a saved model that matches the filters."""
    runs_root = os.path.join(results_dir, "runs")
    if run:
        for candidate in (run, os.path.join(runs_root, run)):
            if os.path.isfile(os.path.join(candidate, "results.json")):
                return candidate
        raise RunError(f"'{run}' is not a run folder (no results.json there or in {runs_root}); "
                       f"give a folder under {runs_root} or its run id")
    candidates = []
    for name in sorted(os.listdir(runs_root)) if os.path.isdir(runs_root) else []:
        path = os.path.join(runs_root, name)
        try:
            info = json.load(open(os.path.join(path, "results.json")))["run_info"]
        except (OSError, ValueError, KeyError):
            continue
        if info.get("status") != "completed" or not os.path.isdir(os.path.join(path, "model")):
            continue
        if (method and info.get("method") != method) or (dataset and info.get("dataset") != dataset):
            continue
        candidates.append((info.get("started_at") or "", name, path))
    if not candidates:
        filters = " ".join(f"--{k} {v}" for k, v in (("method", method), ("dataset", dataset)) if v)
        raise RunError(f"no completed run with a saved model in {runs_root}{' for ' + filters if filters else ''}; "
                       f"train one first (e.g. python train_lora.py) or pass --run")
    return max(candidates)[2]


def _loader(spec: str | None):
    if not spec:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _base_path(info: dict) -> str:
    """Where the weights the method started from are: the continued pre-training's result, or the
    pretrained model (an alias like 'minilm' resolved as when training)."""
    from runner import resolve_model_path

    base = info.get("base_model_path")
    if base and base != info.get("model_resolved_path"):
        if not os.path.isdir(base):
            raise RunError(f"the run's continued pre-training result {base} is missing; it is needed under the "
                           f"adapter or trained parameters in model/")
        return base
    return resolve_model_path(info["model_name_or_path"])


def load_run(run_dir: str, device: torch.device, merged: bool = False):
    """(model in eval mode, tokenizer, results dict) of a run folder; merged=True loads merged_model/ (LoRA runs
    trained with --export_merged)."""
    from transformers import AutoTokenizer

    results = json.load(open(os.path.join(run_dir, "results.json")))
    info = results["run_info"]
    model_dir = os.path.join(run_dir, "merged_model" if merged else "model")
    if not os.path.isdir(model_dir):
        if merged:
            raise RunError(f"run '{info['run_id']}' has no merged model; train a LoRA-family method with "
                           f"--export_merged, or drop --merged")
        raise RunError(f"run '{info['run_id']}' has no saved model (status {info['status']}"
                       f"{', trained with --save_model false' if info['status'] == 'completed' else ''}); "
                       f"pick another run with --run")
    labels = info["label_names"]
    label_kwargs = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)})
    loader = _loader(info.get("model_loader"))
    parameters = inspect.signature(loader).parameters
    if "method_options" in parameters:  # e.g. QLoRA's 4-bit settings
        label_kwargs["method_options"] = info["config"]["method_options"]
    if "device" in parameters:
        label_kwargs["device"] = device
    is_adapter = os.path.isfile(os.path.join(model_dir, "adapter_config.json"))
    is_partial = os.path.isfile(os.path.join(model_dir, "method.json"))
    if is_adapter or is_partial:
        base_path = _base_path(info)
        try:
            base = loader(base_path, **label_kwargs)
        except OSError as error:
            raise RunError(f"the run's base model '{info['model_name_or_path']}' cannot be loaded "
                           f"({str(error).splitlines()[0]})") from None
        if is_adapter:
            from peft import PeftModel

            # The adapter file carries the trained head (modules_to_save); without it the head would stay random.
            model = PeftModel.from_pretrained(base, model_dir)
        else:
            from methods import load_trained

            # The trained tensors (head included) onto the rebuilt method; a missing one is an error, not random.
            model = load_trained(base, model_dir, info["head_modules"])
    else:
        model = loader(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model.to(device).eval(), tokenizer, results


@torch.no_grad()
def predict(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities, one row per text; batches padded to their own longest text."""
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                          padding=True, return_tensors="pt").to(device)
        logits = model(**batch).logits.float()
        rows.append(torch.softmax(logits, dim=-1).cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, model.config.num_labels))


def verify(model, tokenizer, results: dict, run_dir: str) -> tuple[bool, str]:
    """Re-test the reloaded model on the run's own test split against what the run recorded."""
    import utils
    from config import DataArguments

    info = results["run_info"]
    data_args = DataArguments(**info["config"]["data"])
    splits = utils.load_splits(data_args)
    texts, labels = splits.test
    recorded = json.load(open(os.path.join(run_dir, "test_predictions.json")))
    if recorded["labels"] != list(labels):
        return False, ("the rebuilt test split differs from the one the run used (different data files?); "
                       "cannot compare")
    batch_size = info["config"]["training"]["per_device_eval_batch_size"]
    probabilities = predict(model, tokenizer, texts, data_args.max_seq_length, batch_size)
    predictions = probabilities.argmax(-1)
    accuracy = float((predictions == np.asarray(labels)).mean())
    recorded_accuracy = results["train_info"]["test"]["accuracy"]
    agreement = float((predictions == np.asarray(recorded["predictions"])).mean())
    max_prob_diff = float(np.abs(probabilities - np.asarray(recorded["probabilities"])).max())
    # Exact agreement is expected on the same machine; a near-tie may flip on other hardware.
    ok = agreement >= 0.995 and abs(accuracy - recorded_accuracy) <= 0.005
    return ok, (f"test accuracy {accuracy:.4f} (recorded {recorded_accuracy:.4f}) on {len(labels)} examples; "
                f"predictions agree on {agreement:.2%}; largest probability difference {max_prob_diff:.2e}")


def read_texts(args) -> list[str]:
    texts = [t for t in args.texts if t != "-"]
    if "-" in args.texts:
        texts += [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if args.file:
        if not os.path.isfile(args.file):
            raise RunError(f"--file '{args.file}' does not exist; give a text file with one sentence per line")
        with open(args.file, encoding="utf-8", errors="replace") as handle:
            texts += [line.rstrip("\n") for line in handle if line.strip()]
    return texts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", nargs="*", help="Sentences to classify; '-' reads one per line from standard input. "
                        "With none (and no --file), a few built-in examples are classified.")
    parser.add_argument("--file", help="A UTF-8 text file with one sentence per line.")
    parser.add_argument("--run", help="Run folder or run id (default: the newest completed run with a model).")
    parser.add_argument("--results_dir", default="results", help="Where runs live (results_dir/runs/<run id>).")
    parser.add_argument("--method", help="With no --run: the newest run of this method (full, lora, prefix, ...).")
    parser.add_argument("--dataset", help="With no --run: the newest run on this data set.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="Where to run the model.")
    parser.add_argument("--batch_size", type=int, default=64, help="Sentences per forward pass.")
    parser.add_argument("--merged", action="store_true",
                        help="Use the run's merged model (LoRA-family runs trained with --export_merged) instead of "
                        "the adapter on its base model.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object per sentence instead of a table.")
    parser.add_argument("--verify", action="store_true",
                        help="Re-test the reloaded model on the run's test split and compare with the recorded "
                        "accuracy and predictions; exit status 1 if they differ.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from runner import quiet_bitsandbytes

    quiet_bitsandbytes()
    try:
        if args.batch_size < 1:
            raise RunError(f"--batch_size must be at least 1, got {args.batch_size}")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise RunError("--device cuda was asked for but no CUDA device is available; use --device cpu")
        device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
        texts = read_texts(args)
        run_dir = find_run(args.run, args.results_dir, args.method, args.dataset)
        model, tokenizer, results = load_run(run_dir, device, merged=args.merged)
    except (RunError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    info = results["run_info"]
    print(f"run {info['run_id']}: {info.get('method_label', info['method'])}{' (merged)' if args.merged else ''} / {info['model_name_or_path']} / {info['dataset']}, "
          f"test accuracy {results['train_info']['test']['accuracy']:.4f}", file=sys.stderr)
    if args.verify:
        try:
            ok, message = verify(model, tokenizer, results, run_dir)
        except ValueError as error:  # the run's data can no longer be loaded
            print(f"error: cannot rebuild the run's test split: {error}", file=sys.stderr)
            return 2
        print(f"verify {'passed' if ok else 'FAILED'}: {message}")
        if not ok:
            return 1
        if not texts:
            return 0
    texts = texts or EXAMPLES
    max_length = info["config"]["data"]["max_seq_length"]
    probabilities = predict(model, tokenizer, texts, max_length, args.batch_size)
    names = info["label_names"]
    for text, row in zip(texts, probabilities):
        best = int(row.argmax())
        if args.json:
            print(json.dumps({"text": text, "label": names[best], "probability": round(float(row[best]), 6),
                              "probabilities": {n: round(float(p), 6) for n, p in zip(names, row)}}))
        else:
            print(f"{names[best]:<10} {row[best]:.3f}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Classify sentences with a trained run: full model, or peft adapter plus its classification head.

    python inference.py "@united thanks, the crew was wonderful!" "worst service ever"   # newest completed run
    python inference.py --run results/runs/<run id> --file sentences.txt     # one sentence per line
    cat sentences.txt | python inference.py --method lora -                  # '-' reads standard input
    python inference.py                                                      # a few built-in examples
    python inference.py --run <run id> --verify    # re-test the reloaded model against the recorded results
    python inference.py --run <run id> --benchmark # latency at batch 1, throughput at batch 64
                                                   # -> inference_benchmark.json

--verify rebuilds the run's test split from its recorded data settings and checks that the reloaded
model reproduces the recorded test accuracy and per-example predictions: a peft head that silently
stays random after reloading would fail it.

--benchmark times the model's forward pass on the run's device: latency at batch size 1 (median and p90 ms
per call) and throughput at --benchmark_batch_size (sentences/s), after warm-up calls, on real sentences
(the built-in examples, or those given). A LoRA-family run is measured twice, as loaded (adapters unmerged)
and merged into the weights (merge_and_unload on a fresh copy), with the speed-up and the largest logit
difference between the two. The result goes to <run folder>/inference_benchmark.json.

Odd input is answered, never a crash: every text given gets exactly one line (one JSON object with --json), in
order, with probabilities summing to 1, and the exit status is 0. With --json each object has text, label,
probability, probabilities, num_tokens, truncated and notes (a list, empty when there is nothing to say); the
table prints the notes on standard error as 'note: text N: ...'.
  - Longer than the run's max_seq_length tokens (special tokens included): truncated to its first
    max_seq_length tokens, as in training. --json reports "num_tokens" (the whole text's count) and
    "truncated": true; the table prints a note on standard error.
  - Empty, whitespace only, or nothing the tokenizer keeps (control characters, zero-width marks alone): the
    model still answers (its answer to an empty input, [CLS] [SEP]), with a note that there was no text to
    classify; blank lines in --file or standard input are skipped, as separators between sentences.
  - Control characters, zero-width and right-to-left marks, emoji: classified as the tokenizer sees them. The
    table shows them escaped (\\x1b, \\u200b, \\u202e; never raw escape sequences or bidi overrides on the
    terminal) and long texts shortened; --json keeps the text whole (JSON-escaped).
  - Lone surrogates ('\\ud800': undecodable bytes in the arguments arrive as these) cannot be encoded as
    UTF-8: each is replaced by U+FFFD (the replacement character, as undecodable bytes in --file and standard
    input are) and the text classified, with a note saying so.
  - --file or '-' with no non-blank line: nothing is printed but a note on standard error (exit 0), not the
    built-in examples.

Loading is safe by default: a run's weights are read only from safetensors files (a model folder holding
pickle-based files such as *.bin or *.pt is refused), and model code from the Hub runs only for a run trained
with --trust_remote_code when inference.py is given --trust_remote_code too.
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import argparse
import io
import json
import os
import sys
import unicodedata
import warnings

import numpy as np
import torch

from ftbench import run_store
from ftbench.errors import ConfigError
from ftbench.hub_offline import go_offline_if_hub_unreachable
from ftbench.inference_benchmark import BENCHMARK_DEFAULTS, benchmark_table, run_benchmark
from ftbench.run_store import MERGED_MODEL_DIR, MODEL_DIR, PREDICTIONS_FILE, RESULTS_FILE, RUNS_DIR

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
    runs_root = os.path.join(results_dir, RUNS_DIR)
    if run:
        for candidate in (run, os.path.join(runs_root, run)):
            if os.path.isfile(os.path.join(candidate, RESULTS_FILE)):
                return candidate
        raise RunError(f"'{run}' is not a run folder (no results.json there or in {runs_root}); "
                       f"give a folder under {runs_root} or its run id")
    candidates = []
    for name in sorted(os.listdir(runs_root)) if os.path.isdir(runs_root) else []:
        path = os.path.join(runs_root, name)
        try:
            info = json.load(open(os.path.join(path, RESULTS_FILE)))["run_info"]
        except (OSError, ValueError, KeyError):
            continue
        if info.get("status") != "completed" or not os.path.isdir(os.path.join(path, MODEL_DIR)):
            continue
        if (method and info.get("method") != method) or (dataset and info.get("dataset") != dataset):
            continue
        candidates.append((info.get("started_at") or "", name, path))
    if not candidates:
        filters = " ".join(f"--{k} {v}" for k, v in (("method", method), ("dataset", dataset)) if v)
        raise RunError(f"no completed run with a saved model in {runs_root}{' for ' + filters if filters else ''}; "
                       f"train one first (e.g. python train_lora.py) or pass --run")
    return max(candidates)[2]


def _base_path(info: dict) -> str:
    """Where the weights the method started from are: the continued pre-training's result, or the
    pretrained model (an alias like 'minilm' resolved as when training)."""
    from ftbench.model_names import resolve_model_path

    base = info.get("base_model_path")
    if base and base != info.get("model_resolved_path"):
        if not os.path.isdir(base):
            raise RunError(f"the run's continued pre-training result {base} is missing; it is needed under the "
                           f"adapter or trained parameters in model/")
        return base
    return resolve_model_path(info["model_name_or_path"])


# Formats that torch.load / pickle read, and that can run code when loaded: never in a run's model folders.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def pickled_files(folder: str) -> list[str]:
    """Files under folder (relative paths) in a pickle-based format."""
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, name), folder) for name in files
                  if name.lower().endswith(PICKLE_SUFFIXES)]
    return sorted(found)


def remote_code_setting(info: dict, allowed: bool) -> bool:
    """trust_remote_code for loading a run: what the run recorded, and only if the user allows it again here;
    False for every run trained without it."""
    recorded = bool(info.get("config", {}).get("model", {}).get("trust_remote_code", False))
    if recorded and not allowed:
        raise RunError(f"run '{info['run_id']}' was trained with --trust_remote_code: loading it runs model code "
                       f"from '{info['model_name_or_path']}'; pass --trust_remote_code if you trust that code")
    return recorded


def load_run(run_dir: str, device: torch.device, merged: bool = False, trust_remote_code: bool = False):
    """(model in eval mode, tokenizer, results dict) of a run folder; merged=True loads merged_model/ (LoRA runs
    trained with --export_merged). The run's weights are read from safetensors only; trust_remote_code=True
    permits (never forces) model code from the Hub for a run that recorded --trust_remote_code."""
    from transformers import AutoTokenizer

    results = json.load(open(os.path.join(run_dir, RESULTS_FILE)))
    info = results["run_info"]
    model_dir = os.path.join(run_dir, MERGED_MODEL_DIR if merged else MODEL_DIR)
    if info.get("status") != "completed" and os.path.isdir(model_dir):
        # Killed while finishing: the model was saved, results.json not yet marked completed. Not a result.
        raise RunError(f"run '{info['run_id']}' did not complete (status "
                       f"{run_store.effective_status(run_dir, info)}), so its saved files are no result; resume it "
                       f"({run_store.resume_hint(run_dir, info)}) or pick another run with --run")
    if not os.path.isdir(model_dir):
        if merged:
            raise RunError(f"run '{info['run_id']}' has no merged model; train a LoRA-family method with "
                           f"--export_merged, or drop --merged")
        raise RunError(f"run '{info['run_id']}' has no saved model (status {info['status']}"
                       f"{', trained with --save_model false' if info['status'] == 'completed' else ''}); "
                       f"pick another run with --run")
    pickled = pickled_files(model_dir)
    if pickled:
        raise RunError(f"{model_dir} holds pickle-based files ({', '.join(pickled[:3])}), which can run code when "
                       f"loaded; inference.py reads only safetensors weights: remove them, or retrain the run")
    remote_code = remote_code_setting(info, trust_remote_code)
    labels = info["label_names"]
    label_kwargs = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)}, trust_remote_code=remote_code)
    from ftbench.model_loading import base_loader

    # The base model loads as the method loads it for training (ftbench/methods/), whatever results.json says.
    try:
        loader = base_loader(info["method"], info.get("model_type", ""))
    except ConfigError:
        raise RunError(f"run '{info['run_id']}' was trained with method '{info['method']}', which this version "
                       f"of the suite does not have") from None
    label_kwargs.update(method_options=info["config"]["method_options"], device=device)
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
            from ftbench.transforms import load_trained

            # The trained tensors (head included) onto the rebuilt method; a missing one is an error, not random.
            model = load_trained(base, model_dir, info["head_modules"])
    else:
        # The whole model (full fine-tuning, merged_model/): from model.safetensors, never a pickled file.
        model = loader(model_dir, use_safetensors=True, **label_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=remote_code)
    return model.to(device).eval(), tokenizer, results


def clean_text(text: str) -> tuple[str, list[str]]:
    """The text as it can be tokenised (lone surrogates, which cannot be encoded as UTF-8, replaced by U+FFFD),
    and notes on what was changed."""
    if not isinstance(text, str):
        raise TypeError(f"texts must be strings, got {type(text).__name__}")
    surrogates = sum(1 for ch in text if "\ud800" <= ch <= "\udfff")
    if not surrogates:
        return text, []
    cleaned = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    note = (f"{surrogates} invalid character{'s' if surrogates > 1 else ''} (lone surrogate, e.g. an undecodable "
            f"byte) replaced by U+FFFD")
    return cleaned, [note]


def describe_texts(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    """Per text: its token count with special tokens before truncation, whether the model sees only its first
    max_length tokens, and notes (empty input, truncation, replaced characters)."""
    cleaned = [clean_text(text) for text in texts]
    counts = [len(ids) for ids in tokenizer([text for text, _ in cleaned], verbose=False)["input_ids"]] \
        if texts else []
    no_content = len(tokenizer("", verbose=False)["input_ids"])  # [CLS] [SEP]: the special tokens alone
    described = []
    for (_text, notes), count in zip(cleaned, counts):
        notes = list(notes)
        if count <= no_content:
            notes.append("no text to classify (empty, whitespace or control characters only): the probabilities "
                         "are the model's answer to an empty input")
        if count > max_length:
            notes.append(f"truncated: {count} tokens, the first {max_length} used")
        described.append({"num_tokens": count, "truncated": count > max_length, "notes": notes})
    return described


DISPLAY_CHARS = 200


def display_text(text: str, limit: int = DISPLAY_CHARS) -> str:
    """One terminal-safe line: control, format (zero-width, bidi), separator and surrogate characters escaped
    as \\xNN / \\uNNNN, and a text longer than limit characters shortened with its length."""
    shown = text[:limit]
    escaped = "".join(ch.encode("unicode_escape").decode("ascii")
                      if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else ch
                      for ch in shown)
    return escaped + (f"... ({len(text):,} characters)" if len(text) > limit else "")


@torch.no_grad()
def predict(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities, one row per text; batches padded to their own longest text. Any string is
    answered: longer ones truncated to max_length tokens, lone surrogates replaced (see clean_text)."""
    device = next(model.parameters()).device
    texts = [clean_text(text)[0] for text in texts]
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
    recorded = json.load(open(os.path.join(run_dir, PREDICTIONS_FILE)))
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


BENCHMARK_FILE = "inference_benchmark.json"


def merge_plan(model, info: dict, merged: bool) -> tuple[bool, str | None]:
    """(whether a merged copy can be measured beside the model as loaded, why not)."""
    if merged:
        return False, "loaded from merged_model/ (--merged): the LoRA update is already in the weights"
    from peft import PeftModel

    from ftbench.registry import all_methods

    method = all_methods().get(info["method"])
    if method is not None and method.merge_refusal:
        return False, method.merge_refusal
    if not isinstance(model, PeftModel):
        return False, (f"{info['method']} keeps no separate adapter: what it trained is part of the model's own "
                       f"weights, nothing to merge")
    config = model.peft_config[model.active_adapter]
    if config.is_prompt_learning:
        return False, (f"{config.peft_type.value} adds virtual tokens to the input or to every layer's attention, "
                       f"not a change of weights; there is nothing to merge")
    if getattr(model.get_base_model(), "is_loaded_in_4bit", False):
        return False, ("the base weights are 4-bit: merging would round the LoRA update away "
                       "(train_qlora.py refuses --export_merged for the same reason)")
    if not callable(getattr(model, "merge_and_unload", None)):
        return False, f"peft's {config.peft_type.value} model has no merge_and_unload"
    return True, None


def benchmark_command(args, run_dir: str, model, tokenizer, results: dict, texts: list[str],
                      device: torch.device) -> int:
    """--benchmark: time the model (ftbench.inference_benchmark), write the record to the run folder whole or
    not at all (a failed benchmark leaves no file), and print it."""
    plan = merge_plan(model, results["run_info"], args.merged)
    record = run_benchmark(args, model, tokenizer, results, texts, device, plan,
                           lambda: load_run(run_dir, device, trust_remote_code=args.trust_remote_code)[0])
    path = os.path.join(run_dir, BENCHMARK_FILE)
    run_store.write_json_atomic(path, record)
    print(json.dumps(record, indent=2) if args.json else benchmark_table(record))
    print(f"written to {path}", file=sys.stderr)
    return 0


def _lines(handle) -> list[str]:
    """Non-blank lines, without their line ending (\\n, \\r\\n or \\r)."""
    return [line.rstrip("\r\n") for line in handle if line.strip()]


def read_texts(args) -> list[str]:
    """The arguments' texts as given (an empty or blank one included), then standard input's and --file's
    non-blank lines. Input is read as UTF-8 (a leading byte-order mark dropped, undecodable bytes replaced by
    U+FFFD)."""
    texts = [t for t in args.texts if t != "-"]
    if "-" in args.texts:
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is not None:  # the bytes: a stray invalid byte must not end the run with a UnicodeDecodeError
            wrapper = io.TextIOWrapper(buffer, encoding="utf-8-sig", errors="replace", newline=None)
            texts += _lines(wrapper)
            wrapper.detach()  # leave sys.stdin open
        else:
            texts += _lines(sys.stdin)
    if args.file:
        if not os.path.isfile(args.file):
            raise RunError(f"--file '{args.file}' does not exist; give a text file with one sentence per line")
        with open(args.file, encoding="utf-8-sig", errors="replace") as handle:
            texts += _lines(handle)
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
    parser.add_argument("--json", action="store_true", help="Print one JSON object per sentence instead of a table "
                        "(with --benchmark: the benchmark's record).")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="Allow model code from the Hub to run, for a run trained with --trust_remote_code (such "
                        "a run is refused without it). Off unless you trust the model's repository.")
    parser.add_argument("--verify", action="store_true",
                        help="Re-test the reloaded model on the run's test split and compare with the recorded "
                        "accuracy and predictions; exit status 1 if they differ.")
    bench = parser.add_argument_group("benchmark (--benchmark)")
    bench.add_argument("--benchmark", action="store_true",
                       help=f"Time the model instead of printing predictions: latency at batch size 1 and "
                       f"throughput at --benchmark_batch_size, unmerged and merged for LoRA-family runs; written "
                       f"to <run folder>/{BENCHMARK_FILE}. Uses the sentences given, else the built-in examples.")
    bench.add_argument("--benchmark_batch_size", type=int, default=BENCHMARK_DEFAULTS["benchmark_batch_size"],
                       help="Batch size of the throughput measurement (default 64).")
    bench.add_argument("--benchmark_warmup", type=int, default=BENCHMARK_DEFAULTS["benchmark_warmup"],
                       help="Untimed warm-up calls before each measurement (batch-1 calls, then whole batches; "
                       "default 10).")
    bench.add_argument("--benchmark_iterations", type=int, default=BENCHMARK_DEFAULTS["benchmark_iterations"],
                       help="Timed batch-1 calls for the latency, cycling through the sentences (default 100).")
    bench.add_argument("--benchmark_batches", type=int, default=BENCHMARK_DEFAULTS["benchmark_batches"],
                       help="Timed batches for the throughput (default 20).")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    warnings.filterwarnings("ignore", category=FutureWarning)
    go_offline_if_hub_unreachable()  # a run's Hub base model then loads from the cache at once
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for stream in (sys.stdout, sys.stderr):  # a text the terminal's encoding cannot show must not end the run
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, io.UnsupportedOperation):
            pass
    try:
        if args.batch_size < 1:
            raise RunError(f"--batch_size must be at least 1, got {args.batch_size}")
        for name in BENCHMARK_DEFAULTS:
            if getattr(args, name) < 1:
                raise RunError(f"--{name} must be at least 1, got {getattr(args, name)}")
        from ftbench.model_loading import choose_device

        device = choose_device(args.device)
        texts = read_texts(args)
        run_dir = find_run(args.run, args.results_dir, args.method, args.dataset)
        model, tokenizer, results = load_run(run_dir, device, merged=args.merged,
                                             trust_remote_code=args.trust_remote_code)
    except (RunError, ValueError) as error:  # ConfigError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    info = results["run_info"]
    merged = " (merged)" if args.merged else ""
    print(f"run {info['run_id']}: {info.get('method_label', info['method'])}{merged} / {info['model_name_or_path']} / "
          f"{info['dataset']}, "
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
        if not texts and not args.benchmark:
            return 0
    if not texts and (args.texts or args.file) and not args.benchmark:
        print(f"note: no sentences to classify: {'--file ' + repr(args.file) if args.file else 'standard input'} "
              f"had no non-blank line", file=sys.stderr)
        return 0
    texts = texts or EXAMPLES
    if args.benchmark:
        texts = [clean_text(text)[0] for text in texts]
        return benchmark_command(args, run_dir, model, tokenizer, results, texts, device)
    max_length = info["config"]["data"]["max_seq_length"]
    probabilities = predict(model, tokenizer, texts, max_length, args.batch_size)
    described = describe_texts(tokenizer, texts, max_length)
    names = info["label_names"]
    for i, (text, row, about) in enumerate(zip(texts, probabilities, described), start=1):
        best = int(row.argmax())
        if args.json:
            print(json.dumps({"text": clean_text(text)[0], "label": names[best],
                              "probability": round(float(row[best]), 6),
                              "probabilities": {n: round(float(p), 6) for n, p in zip(names, row)},
                              "num_tokens": about["num_tokens"], "truncated": about["truncated"],
                              "notes": about["notes"]}))
        else:
            print(f"{names[best]:<10} {row[best]:.3f}  {display_text(clean_text(text)[0])}")
            for note in about["notes"]:
                print(f"note: text {i}: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

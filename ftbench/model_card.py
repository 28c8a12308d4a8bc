"""The model card: a Hugging Face README.md in every completed run's model/ folder, so that the folder can be
uploaded to the Hub as it is.

    python -m ftbench.model_card results/runs/<run id> ...   # (re)write the card of completed runs

The metadata (YAML, through huggingface_hub's ModelCardData) holds library_name (peft for an adapter folder,
transformers otherwise), base_model and datasets (only where the run loaded them from the Hub: the Hub's card spec
wants Hub ids there, so a local folder, the pip package's MiniLM or local data files are named in the text instead),
metrics, pipeline_tag, tags, and the test figures as a model-index (its dataset type is the Hub id, or the suite's
data set name where the data did not come from the Hub). The text gives the method, the base model, the data, the
test figures, the command that made the run and how to load the folder: with inference.py, and in plain
transformers/peft code where that reproduces the method's loading.

The card is written after the saved model is measured, and is not part of train_info.checkpoint_size_mib."""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines; this module is a command too)

import json
import os
import sys

from ftbench.run_store import (
    MERGED_MODEL_DIR,
    MODEL_CARD_FILE,
    MODEL_DIR,
    RESULTS_FILE,
    ResultsError,
    read_results,
    write_text_atomic,
)

CARD_METRICS = ["accuracy", "f1"]  # Hub metric ids; the F1 is macro-averaged (model-index args)


def hub_model_id(run_info: dict) -> str | None:
    """The base model's Hub id where the run loaded it from the Hub; None for a local folder (the fingerprint of a
    folder records its weight files' hashes)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = run_info.get("model_resolved_path")
    if not path or "weights_sha256" in (run_info.get("model_fingerprint") or {}):
        return None
    try:
        validate_repo_id(path)
    except HFValidationError:
        return None
    return path


def hub_dataset_id(run_info: dict) -> str | None:
    source = (run_info.get("data") or {}).get("source") or {}
    return source.get("path") if source.get("kind") == "hub" else None


def card_data(run_info: dict, test: dict, kind: str):
    """The card's YAML metadata. library_name only where that library loads the folder as it is (a peft adapter, a
    whole transformers model); the evaluation results (model-index) only for a Hub data set, which they must name."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset_id = hub_dataset_id(run_info)
    source = run_info["data"]["source"]
    common = dict(task_type="text-classification", dataset_type=dataset_id or run_info["dataset"],
                  dataset_name=f"{run_info['dataset']} ({dataset_id or source['kind']})", dataset_split="test",
                  dataset_revision=source.get("revision_sha"))
    tags = ["text-classification", run_info["method"], run_info["method_label"], run_info["dataset"]]
    return ModelCardData(
        library_name={"adapter": "peft", "whole model": "transformers"}.get(kind), base_model=hub_model_id(run_info),
        datasets=[dataset_id] if dataset_id else None, metrics=CARD_METRICS, pipeline_tag="text-classification",
        tags=list(dict.fromkeys(tags)), model_name=run_info["run_id"],
        eval_results=[EvalResult(metric_type="accuracy", metric_value=test["accuracy"], **common),
                      EvalResult(metric_type="f1", metric_value=test["f1_macro"], metric_args={"average": "macro"},
                                 **common)] if dataset_id else None)


def base_text(run_info: dict) -> str:
    """Where the base model came from, in words."""
    from ftbench.model_names import MODEL_ALIASES

    name, resolved = run_info["model_name_or_path"], run_info["model_resolved_path"]
    hub_id = hub_model_id(run_info)
    if hub_id:
        commit = (run_info.get("model_fingerprint") or {}).get("hub_commit")
        text = f"`{hub_id}` from the Hugging Face Hub" + (f" (commit `{commit}`)" if commit else "")
    elif name in MODEL_ALIASES:
        text = (f"the alias `{name}`: a local copy of `{MODEL_ALIASES[name]}` at `{resolved}` (not loaded from "
                f"the Hub, so the metadata names no base_model)")
    else:
        text = f"the local folder `{resolved}` (not a Hub id, so the metadata names no base_model)"
    if run_info.get("base_model_path") and run_info["base_model_path"] != resolved:
        text += (f", then continued pre-training (masked language modelling on the training text), saved in "
                 f"`{run_info['base_model_path']}`")
    return text


def method_section(run_info: dict, train_info: dict) -> str:
    from ftbench.registry import get_method

    training = run_info["config"]["training"]
    selection = train_info["selection"]
    counted = train_info.get("checkpoint_files") or {}
    files = ", ".join(f"`{name}`" for name in counted if name != MODEL_CARD_FILE)
    size = f"{train_info.get('checkpoint_size_mib')} MiB, " + (
        "with the README.md peft wrote, as recorded before runs wrote cards" if MODEL_CARD_FILE in counted
        else "the tokenizer and this card not counted")
    return "\n".join([
        "## Method", "",
        f"- **{run_info['method_label']}**: {get_method(run_info['method']).description}.",
        f"- Base model: {base_text(run_info)}.",
        f"- Trained {train_info['num_params_trainable']:,} of {train_info['num_params_total']:,} parameters "
        f"({train_info['trainable_params_pct']:.4g}%), {train_info['epochs']:g} epochs ({train_info['global_steps']} "
        f"optimizer steps), peak learning rate {training['learning_rate']:g}, seed {run_info['seed']}.",
        f"- Tested: the checkpoint of step {selection['best_step']}, chosen by {selection['metric']} "
        f"({selection['rule']}).",
        f"- This folder: {files} ({size}), and the tokenizer.",
        "- Every setting, the data's provenance and the training curves: the run's `results.json`.", ""])


def data_section(run_info: dict) -> str:
    data = run_info["data"]
    source = data["source"]
    where = hub_dataset_id(run_info) or source["kind"]
    files = source.get("file") or ", ".join(f"{split}: {entry['path']}" for split, entry in
                                            (source.get("files") or {}).items())
    labels = ", ".join(f"{i}: {name}" for i, name in enumerate(run_info["label_names"]))
    sizes = run_info["split_sizes"]
    return "\n".join([
        "## Data", "",
        f"- `{run_info['dataset']}` from {where}" + (f" ({files})" if files else "") + ".",
        f"- Labels: {labels}.",
        f"- Examples used: {sizes['train']:,} train, {sizes['validation']:,} validation, {sizes['test']:,} test; "
        + "; ".join(f"{split}: {how}" for split, how in (data.get("split_method") or {}).items()) + ".",
        f"- Texts cut to {run_info['config']['data']['max_seq_length']} tokens.", ""])


def results_section(test: dict) -> str:
    baseline = test["majority_baseline"]
    return "\n".join([
        "## Test results", "",
        "| test examples | accuracy | macro-F1 |", "|---|---|---|",
        f"| {test['num_examples']:,} | {test['accuracy']:.4f} | {test['f1_macro']:.4f} |", "",
        f"Always answering the training split's most frequent class (`{baseline['label']}`) scores accuracy "
        f"{baseline['accuracy']:.4f} and macro-F1 {baseline['f1_macro']:.4f} on the same examples. The metrics are "
        "scikit-learn's `accuracy_score` and `f1_score(average=\"macro\")`.", ""])


def command_section(run_info: dict, meta_info: dict) -> str:
    resumes = [entry["command"] for entry in run_info.get("resumes") or []]
    versions = ", ".join(f"{name} {meta_info[name]}" for name in ("torch", "transformers", "peft")
                         if meta_info.get(name))
    return "\n".join([
        "## How it was made", "",
        f"Run `{run_info['run_id']}` of the fine-tuning methods benchmark, started {run_info['started_at']} in "
        f"`{run_info['working_dir']}` on {meta_info.get('device', '?')} ({versions}):", "",
        "```bash", run_info["command"], *(f"{command}  # resumed" for command in resumes), "```", ""])


SUITE_LOADING = """### With this suite

From the suite's folder, with the whole run folder (`results.json` beside `model/`):

```bash
python inference.py --run {run_dir} "a sentence to classify"
python inference.py --run {run_dir} --verify   # reload and re-test against the recorded results
```

or in Python, from the same folder:

```python
import torch
from inference import load_run

model, tokenizer, results = load_run("{run_dir}", torch.device("cpu"))
```
"""

PREDICT = """texts = ["a sentence to classify"]
inputs = tokenizer(texts, truncation=True, max_length={max_length}, padding=True, return_tensors="pt")
with torch.no_grad():
    probabilities = model(**inputs).logits.softmax(-1)
print([model.config.id2label[int(i)] for i in probabilities.argmax(-1)])"""


def base_location(run_info: dict) -> str:
    """Where the weights the method started from are, for loading: the Hub id, or the local folder's absolute path
    (the pretrained model, or the run's continued pre-training result)."""
    path = run_info["base_model_path"]
    if path == run_info["model_resolved_path"] and hub_model_id(run_info):
        return path
    return os.path.normpath(os.path.join(run_info["working_dir"], path))


def folder_kind(model_dir: str, trust_remote_code: bool) -> str:
    """What the saved folder holds: "whole model", "adapter" (peft), "trained tensors" (parameters of the plain model,
    which load onto it by name) or "method modules" (trained tensors of modules the plain model lacks)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from ftbench.transforms import METHOD_FILE, TRAINED_FILE

    if os.path.isfile(os.path.join(model_dir, "adapter_config.json")):
        return "adapter"
    if not os.path.isfile(os.path.join(model_dir, METHOD_FILE)):
        return "whole model"
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    with torch.device("meta"):  # the architecture alone, no weights
        names = set(AutoModelForSequenceClassification.from_config(config).state_dict())
    with safe_open(os.path.join(model_dir, TRAINED_FILE), "pt") as tensors:
        return "trained tensors" if set(tensors.keys()) <= names else "method modules"


def plain_loading(run_info: dict, kind: str) -> tuple[list[str], list[str]]:
    """(imports, lines) of Python that build `model` from the folder with transformers (and peft) alone."""
    from ftbench.transforms import TRAINED_FILE

    remote = ", trust_remote_code=True" if run_info["config"]["model"].get("trust_remote_code") else ""
    base = json.dumps(base_location(run_info))
    if kind == "whole model":
        return [], [f"model = AutoModelForSequenceClassification.from_pretrained(model_dir{remote}).eval()"]
    if kind == "adapter":
        return ["from peft import PeftModel"], [
            f"labels = {json.dumps(run_info['label_names'])}",
            f"base = AutoModelForSequenceClassification.from_pretrained(\n    {base}, num_labels=len(labels), "
            f"id2label=dict(enumerate(labels)),\n    label2id={{name: i for i, name in enumerate(labels)}}{remote})",
            "model = PeftModel.from_pretrained(base, model_dir).eval()"]
    load_base = (f"model = AutoModelForSequenceClassification.from_pretrained(\n    {base}, "
                 f"config=AutoConfig.from_pretrained(model_dir{remote}){remote})")
    if kind == "trained tensors":
        return ["from safetensors.torch import load_file"], [
            load_base, f"loaded = model.load_state_dict(load_file(f\"{{model_dir}}/{TRAINED_FILE}\"), strict=False)",
            "assert not loaded.unexpected_keys, loaded.unexpected_keys  # each tensor replaces a parameter",
            "model.eval()"]
    return ["from ftbench.transforms import load_trained  # this suite's code: it rebuilds the method's modules"], [
        load_base, f"model = load_trained(model, model_dir, {json.dumps(run_info['head_modules'])}).eval()"]


def loading_section(run_info: dict, model_dir: str) -> str:
    from ftbench.model_loading import base_loader, from_pretrained

    lines = ["## How to load it", "", SUITE_LOADING.format(run_dir=run_info["run_dir"])]
    loader = base_loader(run_info["method"], run_info["model_type"])
    if loader is not from_pretrained:
        doc = " ".join((loader.__doc__ or "").split())
        name = f"{loader.__module__}.{loader.__qualname__}"
        lines += ["### Without the suite", "",
                  f"This method loads its base model through its own loader, `{name}`" + (f" ({doc})" if doc else "")
                  + ", which plain transformers code does not reproduce: load the folder with the suite, as above.", ""]
        return "\n".join(lines)
    kind = folder_kind(model_dir, bool(run_info["config"]["model"].get("trust_remote_code")))
    imports, loading = plain_loading(run_info, kind)
    config = "AutoConfig, " if any("AutoConfig" in line for line in loading) else ""
    code = ["import torch", f"from transformers import {config}AutoModelForSequenceClassification, AutoTokenizer",
            *imports, "", f"model_dir = {json.dumps(model_dir)}  # this folder, or the Hub repository holding it",
            "tokenizer = AutoTokenizer.from_pretrained(model_dir)", *loading, "",
            PREDICT.format(max_length=run_info["config"]["data"]["max_seq_length"])]
    lines += [f"### With {HEADINGS.get(kind, 'transformers')}", "",
              f"This folder holds {KIND_TEXT[kind]}.", "", "```python", *code, "```", ""]
    merged = os.path.join(run_info["run_dir"], MERGED_MODEL_DIR)
    if os.path.isdir(merged):
        lines += [f"`{merged}` holds the model with the update merged into its weights: load it as a whole model, "
                  "`AutoModelForSequenceClassification.from_pretrained(...)`.", ""]
    return "\n".join(lines)


HEADINGS = {"adapter": "transformers and peft", "method modules": "transformers and the suite's load_trained"}
KIND_TEXT = {
    "whole model": "the whole model: transformers loads it as it is",
    "adapter": "a peft adapter with the trained classification head (modules_to_save); it goes onto the base model, "
               "loaded with the run's labels",
    "trained tensors": "only the trained tensors (trained_parameters.safetensors), each a parameter of the plain "
                       "model, and method.json; they go onto the base model by name",
    "method modules": "the trained tensors (trained_parameters.safetensors) of modules the method adds to the base "
                      "model, and method.json, from which this suite rebuilds them",
}


def model_card(run_info: dict, train_info: dict, meta_info: dict, model_dir: str):
    """The card of a run's saved model, as a huggingface_hub ModelCard."""
    from huggingface_hub import ModelCard

    test = train_info["test"]
    kind = folder_kind(model_dir, run_info["config"]["model"].get("trust_remote_code", False))
    data = card_data(run_info, test, kind)
    labels = ", ".join(run_info["label_names"])
    intro = (f"# {run_info['run_id']}\n\nA text classifier ({labels}) trained with **{run_info['method_label']}** "
             f"on `{run_info['dataset']}` by the fine-tuning methods benchmark: test accuracy {test['accuracy']:.4f}, "
             f"macro-F1 {test['f1_macro']:.4f} on {test['num_examples']:,} examples.\n")
    body = "\n".join([intro, method_section(run_info, train_info), data_section(run_info), results_section(test),
                      command_section(run_info, meta_info), loading_section(run_info, model_dir)])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def card_for(run_dir: str, train_info: dict | None = None) -> tuple[str, str]:
    """(path, text) of <run_dir>/model/README.md from the run's results.json (run_info, meta_info) and train_info
    (by default the results file's: a completed run)."""
    results = read_results(os.path.join(run_dir, RESULTS_FILE))
    run_info = {**results["run_info"], "run_dir": os.path.abspath(run_dir)}  # where the folder is now
    card = model_card(run_info, train_info or results["train_info"], results.get("meta_info") or {},
                      os.path.join(run_info["run_dir"], MODEL_DIR))
    return os.path.join(run_dir, MODEL_DIR, MODEL_CARD_FILE), str(card)


def write_model_card(run_dir: str, train_info: dict | None = None) -> str:
    """Write the run's card (card_for); returns its path."""
    path, text = card_for(run_dir, train_info)
    write_text_atomic(path, text)
    return path


def try_write_model_card(run_dir: str, train_info: dict) -> str | None:
    """The card at the end of a run: None once written, or a line saying why it was not (the run and its model
    stand without it, and the command that writes it later)."""
    try:
        write_model_card(run_dir, train_info)
    except Exception as error:  # a card is documentation: no run fails for want of one
        return (f"model card not written ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''});"
                f" once the run has completed: python -m ftbench.model_card {run_dir}")
    return None


def main(argv: list[str]) -> int:
    """(Re)write the cards of the completed runs named; each is checked before any card is written."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m ftbench.model_card <run folder> ...: writes each completed run's model/README.md",
              file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    try:
        for run_dir in argv:
            info = read_results(os.path.join(run_dir, RESULTS_FILE))["run_info"]
            if info.get("status") != "completed" or not os.path.isdir(os.path.join(run_dir, MODEL_DIR)):
                raise ResultsError(f"{run_dir} is not a completed run with a saved model/ (status "
                                   f"{info.get('status')}); give a completed run's folder")
        cards = [card_for(run_dir) for run_dir in argv]  # all made before any is written
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as error:  # a results file from an older version lacks what the card needs
        print(f"error: a card cannot be made from these results ({type(error).__name__}: {error}); "
              f"no card was written", file=sys.stderr)
        return 2
    for path, text in cards:
        write_text_atomic(path, text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

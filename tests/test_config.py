"""Configuration: defaults per method, config files, command-line precedence, validation, --help."""

import dataclasses
import json
import subprocess
import sys

import pytest

from config import (
    ConfigError,
    DataArguments,
    ModelArguments,
    PretrainingArguments,
    TrainingConfig,
    parse_args,
)
from conftest import ROOT
from ftbench.registry import get_method, method_names


def test_method_defaults_differ_only_where_they_should():
    full, lora, prefix = (parse_args(m, []) for m in ("full", "lora", "prefix"))
    assert full.training.learning_rate == 5e-5
    assert lora.training.learning_rate == 3e-3
    assert prefix.training.learning_rate == 1e-2
    options = lora.method_options
    assert (options.lora_r, options.lora_alpha, options.lora_dropout) == (8, 16, 0.1)
    assert prefix.method_options.num_virtual_tokens == 20
    # everything else is shared
    for run in (lora, prefix):
        assert dataclasses.replace(run.training, learning_rate=None) == dataclasses.replace(full.training,
                                                                                             learning_rate=None)
        assert run.data == full.data and run.model == full.model
    assert full.training.seed == 42 and full.data.split_seed == 42
    assert full.model.model_name_or_path == "minilm" and full.data.dataset == "tweets"


def test_config_file_then_command_line(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("dataset: sst2\nlearning_rate: 0.001\nlora_r: 4\nlora_target_modules: [query, key]\n"
                         "num_train_epochs: 2\nprecision: fp32\nsave_model: false\n")
    run = parse_args("lora", ["--config", str(yaml_file), "--lora_r", "16"])
    assert run.data.dataset == "sst2"
    assert run.training.learning_rate == 0.001
    assert run.training.num_train_epochs == 2.0
    assert run.method_options.lora_r == 16  # the command line wins
    assert run.method_options.lora_target_modules == ["query", "key"]
    assert run.training.save_model is False

    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"num_virtual_tokens": 5, "max_train_samples": 100}))
    run = parse_args("prefix", ["--config", str(json_file)])
    assert run.method_options.num_virtual_tokens == 5 and run.data.max_train_samples == 100


@pytest.mark.parametrize("content, fragment", [
    ("lora_rank: 4\n", "unknown option(s) lora_rank"),
    ("- just\n- a list\n", "must hold a mapping"),
    ("learning_rate: [unclosed\n", "not valid YAML"),
    ("learning_rate: -1\n", "--learning_rate must be positive"),
])
def test_bad_config_file(tmp_path, content, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as error:
        parse_args("lora", ["--config", str(path)])
    assert fragment in str(error.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file 'nope.yaml' not found"):
        parse_args("full", ["--config", "nope.yaml"])


@pytest.mark.parametrize("argv, fragment", [
    (["--learning_rate", "-0.1"], "--learning_rate must be positive"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be at least 1"),
    (["--num_train_epochs", "0"], "--num_train_epochs must be positive"),
    (["--dataset", "mnist"], "unknown --dataset 'mnist'"),
    (["--dataset", "local"], "--dataset local needs --train_file"),
    (["--train_file", "x.csv"], "--train_file is only for --dataset local"),
    (["--max_train_samples", "0"], "--max_train_samples must be a positive number"),
    (["--validation_fraction", "0.7"], "--validation_fraction must lie between 0 and 0.5"),
    (["--lora_r", "0"], "--lora_r must be at least 1"),
    (["--lora_dropout", "1.5"], "--lora_dropout must lie in [0, 1)"),
])
def test_invalid_values(argv, fragment):
    with pytest.raises(ConfigError) as error:
        parse_args("lora", argv)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_option():
    with pytest.raises(ConfigError, match="unrecognized arguments: --lora_r 4"):
        parse_args("full", ["--lora_r", "4"])  # a LoRA option given to full fine-tuning


def test_wrongly_typed_value_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args("full", ["--learning_rate", "fast"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--learning_rate" in err and "invalid" in err


@pytest.mark.slow  # a process per method
@pytest.mark.parametrize("method", method_names())
def test_help_explains_every_option(method):
    result = subprocess.run([sys.executable, f"train_{method}.py", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    groups = [ModelArguments, DataArguments, TrainingConfig, PretrainingArguments, get_method(method).options]
    for group in groups:
        for field in dataclasses.fields(group):
            assert f"--{field.name}" in result.stdout
            assert field.metadata.get("help"), f"{field.name} has no help text"
    assert "--config" in result.stdout
    assert f"Default learning rate for this method: {get_method(method).learning_rate:g}" in " ".join(
        result.stdout.split())
    # Options of other methods are not offered.
    own = {field.name for field in dataclasses.fields(get_method(method).options)}
    for option in ("lora_r", "num_virtual_tokens", "adapter_style", "adalora_init_r", "bnb_4bit_quant_type", "vera_r"):
        assert (f"--{option}" in result.stdout) == (option in own), option


def test_every_lora_targets_choice_says_which_layers_it_adapts():
    from typing import get_args

    from ftbench.methods.lora import TARGET_ROLES, LoraTargets

    assert list(TARGET_ROLES) == list(get_args(LoraTargets)) == ["query_value", "attention", "all_linear"]

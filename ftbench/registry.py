"""The method registry: every method is declared once, in its own file under ftbench/methods/, by a call to
register(Method(...)). Everything else (the option parser, the runner, inference, the sweep, the report) asks
the registry, never the method's name:

    from ftbench.registry import get_method, method_names
    method = get_method("lora")
    method.options            # its option dataclass (help text, checks)
    method.learning_rate      # its default peak learning rate
    method.build(run_config, model_config, head_modules)   # a peft config, a ModelTransform, or None
    method.search_space       # the options a hyperparameter search tries besides the learning rate

Adding a method: one file in ftbench/methods/ (discovered here, nothing to list), one train_<name>.py that calls
ftbench.script_entry.main("<name>"), and a test. As peft's register_peft_method and torchtune's recipe registry do.
Importing the registry imports no torch: method files import peft and torch inside their functions only.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

from ftbench.run_store import training_script


@dataclass(frozen=True)
class Method:
    """What makes a method a method here. Only name, options, learning_rate, description and build are needed."""

    name: str
    options: type  # a dataclass of the method's own options: help text and checks in __post_init__
    learning_rate: float  # the default peak learning rate
    description: str  # completes "Fine-tune a text classifier with ..."
    # build(run_config, model_config, head_modules) -> a peft config, a transforms.ModelTransform, or None (the
    # model trains as it is). Pure: it reads the settings and never changes them; it raises ConfigError where the
    # method does not fit the model. Called once before any weights load (head_modules=[]) to check, then to build.
    build: Callable
    defaults: dict = field(default_factory=dict)  # option defaults this method changes
    # precheck(run_config): refuses, before even the model's config is read, what cannot run here.
    precheck: Callable | None = None
    # resolve(run_config, model_config) -> {option: (old, new)}: settings that depend on the model or device, set
    # once, in one step, before anything is built; what it changed is printed and recorded.
    resolve: Callable | None = None
    # base_loader(model_type) -> a loader with from_pretrained's signature plus keyword-only method_options (dict)
    # and device, or None for AutoModelForSequenceClassification. Training and inference both load through it.
    base_loader: Callable | None = None
    # rebuild(options) -> the transforms.ModelTransform a saved model/method.json names (methods that are not peft).
    rebuild: Callable | None = None
    variant_options: tuple[str, ...] = ()  # options whose non-default values name a variant: lora[all_linear]
    label: str | None = None  # the name runs are compared under, where not the method's (continued pre-training)
    merge_refusal: str | None = None  # why the trained update cannot be merged into the weights, where it cannot
    not_resumable_because: str | None = None  # why an interrupted run cannot continue from a checkpoint
    # {option: a range from ftbench.search_space}: the method's own options a hyperparameter search (benchmark.py
    # --search optuna) samples, under the training script's option names; the learning rate is searched for every
    # method besides (ftbench.search_space.search_space).
    search_space: dict = field(default_factory=dict)

    @property
    def script(self) -> str:
        return training_script(self.name)

    def option_defaults(self) -> dict:
        return {f.name: f.default for f in dataclasses.fields(self.options)} | self.defaults


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _METHODS and _METHODS[method.name] != method:
        raise ValueError(f"method '{method.name}' is declared twice")
    if not dataclasses.is_dataclass(method.options):
        raise TypeError(f"method '{method.name}': options must be a dataclass")
    _METHODS[method.name] = method
    return method


def _discover() -> None:
    from ftbench import methods

    for module in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"ftbench.methods.{module.name}")


def all_methods() -> dict[str, Method]:
    """Every declared method by name, in alphabetical order."""
    if not _METHODS:
        _discover()
    return dict(sorted(_METHODS.items()))


def method_names() -> list[str]:
    return list(all_methods())


def get_method(name: str) -> Method:
    methods = all_methods()
    if name not in methods:
        from ftbench.errors import ConfigError

        raise ConfigError(f"unknown method '{name}'; choose from {', '.join(methods)}")
    return methods[name]


def method_label(method: Method, method_options, pretraining_enabled: bool) -> str:
    """The name runs are compared under: the method, its variant, and 'mlm+' after continued pre-training."""
    defaults = method.option_defaults()
    parts = []
    for name in method.variant_options:
        value = getattr(method_options, name, None)
        if name in defaults and value != defaults[name]:
            if name == "use_dora":
                parts.append("dora" if value else "no_dora")
            elif isinstance(value, list):
                parts.append("+".join(value))
            elif isinstance(value, bool):
                parts.append(name if value else f"no_{name}")
            else:
                parts.append(str(value).lower())
    base = method.label or method.name
    label = f"{base}[{','.join(parts)}]" if parts else base
    return f"mlm+{label}" if pretraining_enabled else label

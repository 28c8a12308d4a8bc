"""Continued masked-language-model pre-training on the task's own text, then full fine-tuning. The MLM phase
(ftbench/continued_pretraining.py) is on by default for this method (--mlm_epochs 1); any method can add it."""

from ftbench.methods.full import FullArguments, build_full
from ftbench.registry import Method, register
from ftbench.search_space import FloatRange

CONTINUED_PRETRAINING = register(Method(
    name="continued_pretraining", options=FullArguments, learning_rate=5e-5, build=build_full,
    defaults={"mlm_epochs": 1.0}, label="full",
    search_space={"mlm_learning_rate": FloatRange(5e-6, 5e-4, log=True)},  # around its default 5e-5, as for lr
    description="continued masked-language-model pre-training on the task's own text, then full fine-tuning"))

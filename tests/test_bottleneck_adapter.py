"""Bottleneck adapters (bottleneck_adapter.py) on tiny random BERT and DistilBERT classifiers: identity at
init, exact trainable counts by hand, placement, what training changes, and the save/reload round trip.

    python -m pytest -q tests/test_bottleneck_adapter.py
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from config import ConfigError
from ftbench import transforms
from ftbench.bottleneck_adapter import BottleneckAdapter, BottleneckAdapterTransform, check_supported

HIDDEN, LAYERS, LABELS, VOCAB = 32, 2, 2, 100
HEADS = {"bert": ["classifier"], "distilbert": ["classifier", "pre_classifier"]}


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is far faster than several fighting over busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(model_type: str, seed: int = 0, dropout: float = 0.1):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    torch.manual_seed(seed)
    if model_type == "bert":
        return BertForSequenceClassification(BertConfig(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, num_labels=LABELS, hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout))
    return DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=VOCAB, dim=HIDDEN, n_layers=LAYERS, n_heads=4, hidden_dim=64, max_position_embeddings=64,
        num_labels=LABELS, dropout=dropout, attention_dropout=dropout, seq_classif_dropout=dropout))


def batch(seed: int = 0, size: int = 8, length: int = 12):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (size, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.randint(0, LABELS, (size,), generator=generator)}


def logits(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


def trainable(model) -> dict[str, int]:
    return {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}


# Block-relative names of the adapted projections and of the LayerNorms, written out by hand.
BLOCK = {"bert": "bert.encoder.layer.{}.", "distilbert": "distilbert.transformer.layer.{}."}
ATTENTION_OUT = {"bert": "attention.output.dense", "distilbert": "attention.out_lin"}
FFN_OUT = {"bert": "output.dense", "distilbert": "ffn.lin2"}
LAYER_NORMS = {"bert": ("attention.output.LayerNorm", "output.LayerNorm"),
               "distilbert": ("sa_layer_norm", "output_layer_norm")}


def expected_sites(model_type: str, style: str) -> list[str]:
    roles = [ATTENTION_OUT, FFN_OUT] if style == "houlsby" else [FFN_OUT]
    return [BLOCK[model_type].format(i) + role[model_type] for i in range(LAYERS) for role in roles]


def expected_trainable(model_type: str, style: str, layer_norms: bool) -> set[str]:
    names = {f"{site}.adapter.{lin}.{p}" for site in expected_sites(model_type, style)
             for lin in ("down", "up") for p in ("weight", "bias")}
    if layer_norms:
        names |= {BLOCK[model_type].format(i) + f"{ln}.{p}" for i in range(LAYERS)
                  for ln in LAYER_NORMS[model_type] for p in ("weight", "bias")}
    return names | {f"{head}.{p}" for head in HEADS[model_type] for p in ("weight", "bias")}


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
@pytest.mark.parametrize("style", ["houlsby", "pfeiffer"])
def test_adapted_model_computes_exactly_the_original_at_init(model_type, style):
    original = tiny(model_type)
    adapted = BottleneckAdapterTransform(style=style, reduction_factor=4).apply(copy.deepcopy(original),
                                                                               HEADS[model_type])
    inputs = batch()
    assert torch.equal(logits(adapted, inputs), logits(original, inputs))
    # The hooks do run: a non-zero up-projection changes the output (a random one: a constant shift would
    # vanish in the LayerNorm that follows).
    torch.manual_seed(1)
    with torch.no_grad():
        for module in adapted.modules():
            if isinstance(module, BottleneckAdapter):
                module.up.bias.normal_()
    assert not torch.allclose(logits(adapted, inputs), logits(original, inputs))


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
@pytest.mark.parametrize("style,train_layer_norms,layer_norms", [
    ("houlsby", None, True), ("pfeiffer", None, False), ("houlsby", False, False), ("pfeiffer", True, True)])
def test_trainable_parameters_match_a_hand_count(model_type, style, train_layer_norms, layer_norms):
    model = tiny(model_type)
    total_before = sum(p.numel() for p in model.parameters())
    transform = BottleneckAdapterTransform(style=style, reduction_factor=8, train_layer_norms=train_layer_norms)
    model = transform.apply(model, HEADS[model_type])

    b = HIDDEN // 8  # 4
    per_adapter = HIDDEN * b + b + b * HIDDEN + HIDDEN  # down weight + bias, up weight + bias = 292
    adapters_per_layer = 2 if style == "houlsby" else 1
    count = LAYERS * adapters_per_layer * per_adapter
    if layer_norms:
        count += LAYERS * 2 * 2 * HIDDEN  # two LayerNorms per layer, weight and bias each
    head = HIDDEN * LABELS + LABELS  # classifier
    if model_type == "distilbert":
        head += HIDDEN * HIDDEN + HIDDEN  # pre_classifier
    count += head
    assert per_adapter == 292
    assert sum(trainable(model).values()) == count
    assert set(trainable(model)) == expected_trainable(model_type, style, layer_norms)
    # Only adapters were added to the model.
    added = sum(p.numel() for p in model.parameters()) - total_before
    assert added == LAYERS * adapters_per_layer * per_adapter


def test_tiny_bottleneck_is_at_least_one():
    model = BottleneckAdapterTransform(style="pfeiffer", reduction_factor=64).apply(tiny("bert"), ["classifier"])
    adapter = model.get_submodule("bert.encoder.layer.0.output.dense.adapter")
    assert adapter.down.out_features == 1 and adapter.up.in_features == 1


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
@pytest.mark.parametrize("style", ["houlsby", "pfeiffer"])
def test_adapters_sit_on_the_expected_projections(model_type, style):
    model = BottleneckAdapterTransform(style=style).apply(tiny(model_type), HEADS[model_type])
    adapters = [name for name, module in model.named_modules() if isinstance(module, BottleneckAdapter)]
    assert len(adapters) == LAYERS * (2 if style == "houlsby" else 1)
    assert adapters == [site + ".adapter" for site in expected_sites(model_type, style)]
    for site in expected_sites(model_type, style):
        projection = model.get_submodule(site)
        assert isinstance(projection, torch.nn.Linear) and len(projection._forward_hooks) == 1
        assert projection.adapter.down.in_features == HIDDEN and projection.adapter.down.out_features == HIDDEN // 16
    # BERT's feed-forward "output.dense" is not confused with the attention's "attention.output.dense".
    if model_type == "bert" and style == "pfeiffer":
        assert not hasattr(model.get_submodule("bert.encoder.layer.0.attention.output.dense"), "adapter")


def test_mpnet_injection_sites_in_transformers_5():
    from transformers import MPNetConfig, MPNetForSequenceClassification

    config = MPNetConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64, num_labels=LABELS)
    with torch.device("meta"):
        model = BottleneckAdapterTransform().apply(MPNetForSequenceClassification(config), ["classifier"])
    adapters = [name for name, module in model.named_modules() if isinstance(module, BottleneckAdapter)]
    assert adapters == [f"mpnet.encoder.layer.{i}.{site}.adapter" for i in range(LAYERS)
                        for site in ("attention.attn.o", "output.dense")]
    layer_norms = {name.rsplit(".", 1)[0] for name in trainable(model) if "LayerNorm" in name}
    assert layer_norms == {f"mpnet.encoder.layer.{i}.{ln}" for i in range(LAYERS)
                           for ln in ("attention.LayerNorm", "output.LayerNorm")}


def _train(model, steps: int, lr: float = 1e-2) -> list[float]:
    """A few AdamW steps on one fixed batch. The optimizer gets every parameter, so that anything frozen stays
    unchanged because nothing reaches it, not because the optimizer never saw it."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    inputs = batch()
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("model_type,style", [("bert", "houlsby"), ("distilbert", "pfeiffer")])
def test_training_changes_exactly_the_trained_parameters(model_type, style):
    model = BottleneckAdapterTransform(style=style, reduction_factor=4).apply(tiny(model_type, dropout=0.0),
                                                                             HEADS[model_type])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    inputs = batch()
    with torch.no_grad():
        model.eval()
        loss_before = model(**inputs).loss.item()
    _train(model, steps=30)
    with torch.no_grad():
        model.eval()
        loss_after = model(**inputs).loss.item()

    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == expected_trainable(model_type, style, layer_norms=style == "houlsby")
    assert loss_after < 0.5 * loss_before, (loss_before, loss_after)


@pytest.mark.parametrize("model_type,style", [("bert", "houlsby"), ("distilbert", "pfeiffer")])
def test_save_and_load_trained_round_trip(model_type, style, tmp_path):
    pristine = tiny(model_type)  # the "pretrained checkpoint"
    transform = BottleneckAdapterTransform(style=style, reduction_factor=4, activation="gelu")
    model = transform.apply(copy.deepcopy(pristine), HEADS[model_type])
    _train(model, steps=3)
    transforms.save_trained(model, transform, str(tmp_path))
    spec = json.loads((tmp_path / transforms.METHOD_FILE).read_text())
    assert spec == {"transform": "bottleneck_adapter", "options": transform.options()}

    # A fresh load: the same backbone weights, a newly (differently) initialised head.
    fresh = tiny(model_type, seed=1)
    fresh.load_state_dict({name: t for name, t in pristine.state_dict().items()
                           if not transforms.in_modules(name, HEADS[model_type])}, strict=False)
    inputs = batch(seed=1)
    assert not torch.allclose(logits(fresh, inputs), logits(model, inputs))
    reloaded = transforms.load_trained(fresh, str(tmp_path), HEADS[model_type])
    assert torch.equal(logits(reloaded, inputs), logits(model, inputs))


def test_options_rebuild_the_transform():
    transform = BottleneckAdapterTransform(style="pfeiffer", reduction_factor=8, activation="tanh",
                                           train_layer_norms=True)
    options = json.loads(json.dumps(transform.options()))
    rebuilt = transforms.transform_from_dict({"transform": "bottleneck_adapter", "options": options})
    assert isinstance(rebuilt, BottleneckAdapterTransform) and rebuilt.options() == transform.options()
    assert BottleneckAdapterTransform().trains_layer_norms() is True
    assert BottleneckAdapterTransform(style="pfeiffer").trains_layer_norms() is False


def test_unsupported_model_types_and_bad_options_raise_config_error():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=1, n_head=4, n_positions=64)
    with pytest.raises(ConfigError, match=r"model type 'gpt2'.*train_lora\.py"):
        check_supported(config)
    with pytest.raises(ConfigError, match="model type 'gpt2'"):
        BottleneckAdapterTransform().apply(GPT2ForSequenceClassification(config), ["score"])
    check_supported(tiny("bert").config)  # no error
    with pytest.raises(ConfigError, match="activation 'swish'.*relu, gelu, tanh, silu"):
        BottleneckAdapterTransform(activation="swish")
    with pytest.raises(ConfigError, match="activation"):
        BottleneckAdapter(HIDDEN, 4, activation="swish")
    with pytest.raises(ConfigError, match="style"):
        BottleneckAdapterTransform(style="lora")
    with pytest.raises(ConfigError, match="reduction factor"):
        BottleneckAdapterTransform(reduction_factor=0)


def test_applying_twice_is_refused():
    transform = BottleneckAdapterTransform()
    model = transform.apply(tiny("bert"), ["classifier"])
    with pytest.raises(ValueError, match="already has a bottleneck adapter"):
        transform.apply(model, ["classifier"])

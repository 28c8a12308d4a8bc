"""Tests for prefix_distilbert: peft prefix tuning on DistilBERT sequence classification (tiny random model)."""

import math
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel, PrefixTuningConfig, get_peft_model
from transformers import BertConfig, DistilBertConfig, DistilBertForSequenceClassification, MPNetConfig, RobertaConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ftbench import prefix_distilbert as pdb  # noqa: E402

NUM_VIRTUAL_TOKENS = 3
ATTN_IMPLS = ["sdpa", "eager"]


def tiny_config():
    return DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64)


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_distilbert")
    DistilBertForSequenceClassification(tiny_config()).save_pretrained(path)  # num_labels=2 by default
    return str(path)


def peft_model(base_path, attn_implementation=None, seed=1):
    model = pdb.load_distilbert_for_prefix(base_path, num_labels=2, attn_implementation=attn_implementation)
    torch.manual_seed(seed)
    config = PrefixTuningConfig(
        task_type="SEQ_CLS", num_virtual_tokens=NUM_VIRTUAL_TOKENS, **pdb.prefix_tuning_dims(model.config)
    )
    return get_peft_model(model, config)


def batch():
    """Two sequences: the second one padded after 4 tokens."""
    input_ids = torch.tensor([[11, 12, 13, 14, 15, 16, 17], [21, 22, 23, 24, 0, 0, 0]])
    attention_mask = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]])
    return input_ids, attention_mask


def prompt_embedding(pm):
    return pm.prompt_encoder["default"].embedding.weight


# (1) without a prefix the subclass is the stock model


@pytest.mark.parametrize("attn", ATTN_IMPLS)
def test_no_prefix_matches_stock(base_path, attn):
    stock = DistilBertForSequenceClassification.from_pretrained(base_path, attn_implementation=attn).eval()
    ours, info = pdb.load_distilbert_for_prefix(base_path, attn_implementation=attn, output_loading_info=True)
    ours.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert ours.config._attn_implementation == pdb._PREFIX_IMPL_FOR[attn]
    input_ids, attention_mask = batch()
    with torch.no_grad():
        expected = stock(input_ids=input_ids, attention_mask=attention_mask).logits
        got = ours(input_ids=input_ids, attention_mask=attention_mask).logits
        got_no_mask = ours(input_ids=input_ids).logits
        expected_no_mask = stock(input_ids=input_ids).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_no_mask, expected_no_mask, atol=1e-6, rtol=0)


def test_load_passes_config_kwargs_through(base_path):
    id2label = {0: "neg", 1: "mid", 2: "pos"}
    model, info = pdb.load_distilbert_for_prefix(
        base_path,
        num_labels=3,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        output_loading_info=True,
        ignore_mismatched_sizes=True,
    )
    assert isinstance(model, pdb.DistilBertForPrefixSequenceClassification)
    assert model.config.num_labels == 3 and model.config.id2label == id2label
    assert {"classifier.weight", "classifier.bias"} <= {k for k, *_ in info["mismatched_keys"]}
    assert [block.attention.layer_idx for block in model.distilbert.transformer.layer] == [0, 1]


def test_load_rejects_other_checkpoints_and_backends(tmp_path, base_path):
    BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a DistilBERT"):
        pdb.load_distilbert_for_prefix(str(tmp_path))
    with pytest.raises(ValueError, match="not supported"):
        pdb.load_distilbert_for_prefix(base_path, attn_implementation="flex_attention")


def test_prefix_under_stock_attention_raises(base_path):
    pm = peft_model(base_path)
    pm.get_base_model().set_attn_implementation("sdpa")
    input_ids, attention_mask = batch()
    with pytest.raises(ValueError, match="would ignore it"):
        pm(input_ids=input_ids, attention_mask=attention_mask)


# (2) the prefix is used and trained


def test_prefix_changes_logits_and_receives_gradients(base_path):
    pm = peft_model(base_path)
    input_ids, attention_mask = batch()
    pm.eval()
    with torch.no_grad():
        # the wrapped model called without past_key_values = no prefix (peft's disable_adapter() is broken for
        # SEQ_CLS prompt learning in peft 0.21: UnboundLocalError on prepare_inputs_for_generation)
        no_prefix = pm.get_base_model()(input_ids=input_ids, attention_mask=attention_mask).logits
        before = pm(input_ids=input_ids, attention_mask=attention_mask).logits
        prompt_embedding(pm).add_(torch.randn_like(prompt_embedding(pm)))
        after = pm(input_ids=input_ids, attention_mask=attention_mask).logits
    assert (before - no_prefix).abs().max() > 1e-4
    assert (after - before).abs().max() > 1e-4

    pm.train()
    out = pm(input_ids=input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1]))
    out.loss.backward()
    grad = prompt_embedding(pm).grad
    assert grad is not None and grad.abs().sum() > 0
    # each virtual token and both layers' key and value slices get gradient
    per_slice = grad.view(NUM_VIRTUAL_TOKENS, 2 * 2, -1).abs().sum(-1)
    assert (per_slice > 0).all()


def test_gradient_checkpointing_keeps_prefix_gradients(base_path):
    pm = peft_model(base_path)
    pm.get_base_model().activation_checkpointing_enable()
    pm.train()
    input_ids, attention_mask = batch()
    out = pm(input_ids=input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert prompt_embedding(pm).grad.abs().sum() > 0


# (3) padding: prefix always attended, padded tokens never


@pytest.mark.parametrize("attn", ATTN_IMPLS)
def test_padding_invariance(base_path, attn):
    pm = peft_model(base_path, attn_implementation=attn).eval()
    short = torch.tensor([[31, 32, 33, 34]])
    longer = torch.tensor([[41, 42, 43, 44, 45, 46, 47, 48, 49]])
    padded = torch.zeros(2, 9, dtype=torch.long)
    padded[0, :4], padded[1] = short[0], longer[0]
    mask = (padded != 0).long()
    with torch.no_grad():
        alone = pm(input_ids=short, attention_mask=torch.ones_like(short)).logits
        alone_no_mask = pm(input_ids=short).logits
        batched = pm(input_ids=padded, attention_mask=mask).logits
        # changing what sits in the padded slots must not matter
        padded_junk = padded.clone()
        padded_junk[0, 4:] = 99
        batched_junk = pm(input_ids=padded_junk, attention_mask=mask).logits
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(alone_no_mask, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(batched_junk, batched, atol=1e-6, rtol=0)


def test_sdpa_and_eager_agree_with_prefix(base_path):
    input_ids, attention_mask = batch()
    logits = {}
    for attn in ATTN_IMPLS:
        pm = peft_model(base_path, attn_implementation=attn, seed=3).eval()
        with torch.no_grad():
            logits[attn] = pm(input_ids=input_ids, attention_mask=attention_mask).logits
    torch.testing.assert_close(logits["sdpa"], logits["eager"], atol=1e-5, rtol=0)


# (4) one layer's attention with the prefix, recomputed by hand


def test_attention_matches_hand_computation(base_path):
    pm = peft_model(base_path).eval()
    with torch.no_grad():
        prompt_embedding(pm).mul_(3.0)  # make the prefix matter
    input_ids, attention_mask = batch()
    attention = pm.get_base_model().distilbert.transformer.layer[1].attention
    captured = {}

    def hook(module, args, kwargs, output):
        captured["hidden"], captured["out"] = args[0], output[0]

    handle = attention.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        pm(input_ids=input_ids, attention_mask=attention_mask)
        handle.remove()
        cache = pm.get_prompt(batch_size=2)
        prefix_keys, prefix_values = cache.layers[1].keys, cache.layers[1].values  # (2, heads, N, head_dim)

        h = captured["hidden"]
        bsz, seq, dim = h.shape
        heads, head_dim = 4, dim // 4

        def split(x):
            return x.view(bsz, seq, heads, head_dim).transpose(1, 2)

        q, k, v = split(attention.q_lin(h)), split(attention.k_lin(h)), split(attention.v_lin(h))
        keys = torch.cat([prefix_keys, k], dim=2)
        values = torch.cat([prefix_values, v], dim=2)
        scores = q @ keys.transpose(-1, -2) / math.sqrt(head_dim)  # (2, heads, seq, N + seq)
        key_ok = torch.cat([torch.ones(bsz, NUM_VIRTUAL_TOKENS, dtype=torch.bool), attention_mask.bool()], dim=1)
        scores = scores.masked_fill(~key_ok[:, None, None, :], float("-inf"))
        weights = scores.softmax(-1)
        expected = attention.out_lin((weights @ values).transpose(1, 2).reshape(bsz, seq, dim))

        assert prefix_keys.shape == (2, heads, NUM_VIRTUAL_TOKENS, head_dim)
        assert weights[..., :NUM_VIRTUAL_TOKENS].sum(-1).min() > 1e-3  # prefix really carries weight
        # the same computation without the prefix gives a different answer
        no_prefix = (scores[..., NUM_VIRTUAL_TOKENS:].softmax(-1) @ v).transpose(1, 2).reshape(bsz, seq, dim)
        assert (attention.out_lin(no_prefix) - expected).abs().max() > 1e-4
    torch.testing.assert_close(captured["out"], expected, atol=1e-5, rtol=1e-5)


def test_prefix_passed_by_hand_without_extended_mask(base_path):
    """Calling the subclass directly with a prefix and a token-only mask: ones are prepended for the prefix."""
    pm = peft_model(base_path).eval()
    model = pm.get_base_model()
    input_ids, attention_mask = batch()
    with torch.no_grad():
        via_peft = pm(input_ids=input_ids, attention_mask=attention_mask).logits
        direct = model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=pm.get_prompt(2)).logits
        legacy = [(layer.keys, layer.values) for layer in pm.get_prompt(2).layers]
        direct_legacy = model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=legacy).logits
    torch.testing.assert_close(direct, via_peft, atol=1e-6, rtol=0)
    torch.testing.assert_close(direct_legacy, via_peft, atol=1e-6, rtol=0)


# (5) save / reload


def test_save_and_reload_adapter(base_path, tmp_path):
    pm = peft_model(base_path)
    with torch.no_grad():  # move every trainable tensor away from its initial value
        for param in pm.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn_like(param))
    pm.eval()
    input_ids, attention_mask = batch()
    with torch.no_grad():
        expected = pm(input_ids=input_ids, attention_mask=attention_mask).logits
    pm.save_pretrained(tmp_path / "adapter")

    reloaded = PeftModel.from_pretrained(
        pdb.load_distilbert_for_prefix(base_path, num_labels=2), str(tmp_path / "adapter")
    ).eval()
    with torch.no_grad():
        got = reloaded(input_ids=input_ids, attention_mask=attention_mask).logits
    assert torch.equal(got, expected)


# (6) training on a separable toy task


def test_few_steps_reduce_loss(base_path):
    pm = peft_model(base_path, seed=4)
    gen = torch.Generator().manual_seed(0)
    n = 16
    labels = torch.arange(n) % 2
    input_ids = torch.where(labels[:, None] == 0, torch.randint(10, 30, (n, 6), generator=gen),
                            torch.randint(60, 80, (n, 6), generator=gen))
    lengths = torch.randint(3, 7, (n,), generator=gen)
    attention_mask = (torch.arange(6)[None, :] < lengths[:, None]).long()
    input_ids = input_ids * attention_mask

    def eval_loss():
        pm.eval()
        with torch.no_grad():
            return pm(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.item()

    initial = eval_loss()
    optimizer = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=3e-2)
    pm.train()
    torch.manual_seed(0)
    for _ in range(30):
        loss = pm(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = eval_loss()
    assert final < 0.5 * initial, (initial, final)


# (7) support check and dims from the config alone


@pytest.mark.parametrize(
    "config",
    [BertConfig(), RobertaConfig(), DistilBertConfig()],
    ids=["bert", "roberta", "distilbert"],
)
def test_supports_prefix_tuning_true(config):
    ok, reason = pdb.supports_prefix_tuning(config)
    assert ok is True
    assert config.model_type in reason


def test_supports_prefix_tuning_mpnet_false():
    ok, reason = pdb.supports_prefix_tuning(MPNetConfig())
    assert ok is False
    assert "mpnet" in reason and "past key values" in reason


def test_prefix_tuning_dims():
    assert pdb.prefix_tuning_dims(tiny_config()) == {"token_dim": 32, "num_layers": 2, "num_attention_heads": 4}
    bert = BertConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=6)
    assert pdb.prefix_tuning_dims(bert) == {"token_dim": 48, "num_layers": 3, "num_attention_heads": 6}
    roberta = RobertaConfig()
    assert pdb.prefix_tuning_dims(roberta) == {"token_dim": 768, "num_layers": 12, "num_attention_heads": 12}

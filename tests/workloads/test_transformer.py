"""The decoder-only transformer: trains at small sizes, builds on meta at any size, and its
FLOPs and activation memory match closed forms."""

import dataclasses

import pytest
import torch

import workloads
from options.declare import OptionError
from workloads.base import Workload, count_flops
from workloads.tiny_transformer import sequence_cross_entropy
from workloads.transformer import (
    TokenLM,
    TransformerConfig,
    _count_on_meta,
    _transformer_flops,
    markov_tokens,
    token_lm,
    transformer,
)

GPT = TransformerConfig(n_layers=3, d_model=32, n_heads=4, vocab_size=50, seq_len=16)
LLAMA = TransformerConfig(
    n_layers=3,
    d_model=32,
    n_heads=4,
    kv_heads=2,
    ffn_hidden=80,
    vocab_size=50,
    seq_len=16,
    mlp="swiglu",
    norm="rmsnorm",
    positions="rope",
    bias=False,
    tied=False,
)


@pytest.mark.parametrize("style", ["gpt", "llama"])
def test_a_tiny_config_learns_the_chain(style):
    llama = {"mlp": "swiglu", "norm": "rmsnorm", "positions": "rope", "bias": False}
    w = transformer(
        n_layers=2,
        d_model=32,
        n_heads=4,
        vocab_size=64,
        seq_len=16,
        n_sequences=128,
        batch_size=16,
        **({"kv_heads": 2, "tied": False, **llama} if style == "llama" else {}),
    )
    assert isinstance(w, TokenLM)
    model = w.make_model(0)
    before = w.evaluate(model)
    assert before["loss"] == pytest.approx(torch.log(torch.tensor(64.0)).item(), rel=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    stream = w.batches(0, 1, seed=0)
    for _ in range(60):
        x, y = next(stream)
        opt.zero_grad()
        w.loss(model(x), y).backward()
        opt.step()
    after = w.evaluate(model)
    # Two successors per token: the floor is log 2 = 0.69 nats, from log 64 = 4.16.
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] > 0.35


@pytest.mark.parametrize("config", [GPT, LLAMA], ids=["gpt", "llama"])
def test_the_model_is_causal(config):
    w = token_lm("t", config, n_sequences=16, batch_size=2)
    model = w.make_model(0).eval()
    x = w.x_train[:2].clone()
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, :10], model(changed)[:, :10])
        assert not torch.allclose(model(x)[:, 10:], model(changed)[:, 10:])


@pytest.mark.parametrize("config", [GPT, LLAMA], ids=["gpt", "llama"])
def test_closed_form_parameters_are_the_models(config):
    w = token_lm("t", config, n_sequences=16, batch_size=2)
    assert sum(p.numel() for p in w.make_model(0).parameters()) == config.parameter_count()
    assert Workload.parameter_count(w) == config.parameter_count()  # counted on meta


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize("config", [GPT, LLAMA], ids=["gpt", "llama"])
def test_flops_counted_on_meta_are_the_closed_form(config, recompute):
    config = dataclasses.replace(config, recompute=recompute)
    whole = _count_on_meta(config, 2, "float32")
    assert whole == 2 * config.flops_per_sequence()
    # From one- and two-block models (blocks are identical), as the cache computes it.
    assert _transformer_flops(config, 2, "float32") == whole
    # And the same on a real CPU replica, so meta changes nothing.
    w = token_lm("t", config, n_sequences=16, batch_size=2)
    x, y = w.x_train[:2], w.y_train[:2]
    assert count_flops(sequence_cross_entropy, w.make_model(0), x, y) == whole


def test_recomputation_trains_to_the_same_numbers():
    """Checkpointing changes what is kept, not what is computed."""
    grads = []
    for recompute in ("none", "selective", "full"):
        w = token_lm("t", dataclasses.replace(LLAMA, recompute=recompute), n_sequences=16)
        model = w.make_model(0)
        w.loss(model(w.x_train[:4]), w.y_train[:4]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[0], grads[2], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("recompute", ["none", "selective"])
def test_activation_formula_is_what_autograd_keeps_for_a_gpt(recompute):
    """Korthikanti et al.'s accounting (without dropout) against the tensors autograd saves
    on meta (GPT blocks: LayerNorm, GELU and linear layers each save what the formula says)."""
    config = dataclasses.replace(GPT, recompute=recompute, d_model=64, seq_len=32)
    w = token_lm("t", config, dtype="bfloat16", n_sequences=16, batch_size=4)
    measured = Workload.activation_bytes(w)  # the generic count of saved tensors
    assert w.activation_bytes() == config.activation_bytes(4, element_size=2)
    assert measured == pytest.approx(w.activation_bytes(), rel=0.02)


def test_full_recomputation_keeps_a_fraction():
    config = dataclasses.replace(GPT, n_layers=12, recompute="full")
    none = dataclasses.replace(config, recompute="none")
    assert config.activation_bytes(4) < none.activation_bytes(4) / 4


def test_builds_any_size_on_meta():
    w = workloads.get("llama3_70b")
    model = w.meta_model()
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 70_553_706_496
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    x, _ = w.meta_batch()
    assert x.is_meta and tuple(x.shape) == (1, 8192)


def test_markov_tokens_are_seeded():
    a = markov_tokens(4, 20, vocab_size=30, seed=1)
    assert torch.equal(a, markov_tokens(4, 20, vocab_size=30, seed=1))
    assert not torch.equal(a, markov_tokens(4, 20, vocab_size=30, seed=2))
    # Each token has at most two successors.
    pairs = {
        (int(u), int(v))
        for row in markov_tokens(64, 50, 30, seed=0)
        for u, v in zip(row[:-1], row[1:])
    }
    assert max(sum(1 for u, _ in pairs if u == t) for t in range(30)) <= 2


def test_targets_are_inputs_shifted():
    w = transformer(n_sequences=16, batch_size=2)
    torch.testing.assert_close(w.x_train[:, 1:], w.y_train[:, :-1])
    assert len(w.x_test) == 2 and set(w.evaluate(w.make_model(0))) == {"loss", "accuracy"}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"d_model": 30, "n_heads": 4}, "d_model=30 must be a multiple of n_heads=4"),
        ({"kv_heads": 3}, "n_heads=4 must be a multiple of kv_heads=3"),
        ({"d_model": 12, "n_heads": 4, "positions": "rope"}, "even head size"),
        ({"n_sequences": 4, "batch_size": 8}, "n_sequences=4 leaves 3 training sequences"),
        ({"mlp": "relu"}, "mlp"),
        ({"dtype": "float16"}, "dtype"),
        ({"recompute": "some"}, "recompute"),
        ({"partition": "dirichlet"}, "needs 1-D integer class targets"),
    ],
)
def test_bad_options_are_one_line(kwargs, needle):
    with pytest.raises((OptionError, ValueError)) as err:
        transformer(**kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)

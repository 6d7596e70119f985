"""The character-level causal transformer workload."""

import pytest
import torch

from workloads import CharLM, tiny_transformer
from workloads.tiny_transformer import grammar_text


@pytest.fixture(scope="module")
def small():
    return tiny_transformer(n_chars=8000, block_size=16, d_model=32, batch_size=16)


def test_shapes_dtypes_and_shifted_targets(small):
    assert isinstance(small, CharLM)
    assert small.x_train.dtype == small.y_train.dtype == torch.int64
    assert small.x_train.shape[1] == 16
    torch.testing.assert_close(small.x_train[:, 1:], small.y_train[:, :-1])
    torch.testing.assert_close(small.x_train[1:, 0], small.y_train[:-1, -1])  # windows chain


def test_encode_decode_round_trip(small):
    text = "the red cat sees two dogs."
    assert small.decode(small.encode(text)) == text
    assert small.decode(small.x_train[0]) == grammar_text(16, seed=0)


def test_grammar_is_seeded():
    assert grammar_text(500, seed=3) == grammar_text(500, seed=3) != grammar_text(500, seed=4)
    assert len(grammar_text(500)) == 500


def test_model_is_causal(small):
    model = small.make_model(0).eval()
    x = small.x_train[:2].clone()
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % len(small.vocab)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, :10], model(changed)[:, :10])
        assert not torch.allclose(model(x)[:, 10:], model(changed)[:, 10:])


def test_trains(small):
    model = small.make_model(0)
    before = small.evaluate(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    stream = small.batches(0, 2, seed=0)
    for _ in range(80):
        x, y = next(stream)
        opt.zero_grad()
        small.loss(model(x), y).backward()
        opt.step()
    after = small.evaluate(model)
    assert set(after) == {"loss", "accuracy"}
    assert after["loss"] < 0.7 * before["loss"]
    assert after["accuracy"] > 0.3


def test_flops_count_attention_matmuls(small):
    flops = small.flops_per_step()
    b, t, d, v = 16, 16, 32, len(small.vocab)
    # Lower bound: per layer the four d x d projections and the MLP (forward only), plus the
    # attention score/value matmuls; forward+backward must exceed the forward.
    forward_per_layer = 2 * b * t * (4 * d * d + 8 * d * d) + 2 * 2 * b * t * t * d
    assert flops > 2 * forward_per_layer + 2 * b * t * d * v


def test_custom_text():
    w = tiny_transformer(text="abcabcabcabc" * 20, block_size=8, batch_size=4)
    assert w.vocab == "abc"
    assert w.decode(w.x_train[0]) == "abcabcab"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"partition": "dirichlet"}, "partition='dirichlet' needs 1-D integer class targets"),
        ({"partition": "by_class"}, "use partition='iid'"),
        ({"d_model": 30, "n_heads": 4}, "d_model=30"),
        ({"n_heads": 0}, "n_heads=0"),
        ({"test_fraction": 1.0}, "test_fraction=1.0"),
        ({"block_size": 0}, "block_size=0"),
        ({"text": "tiny", "block_size": 8}, "block_size=8"),
        ({"batch_size": -1}, "batch_size=-1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        tiny_transformer(**kwargs)
    assert "\n" not in str(err.value)

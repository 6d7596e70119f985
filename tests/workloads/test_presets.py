"""The published model shapes: parameter counts, FLOPs against 6 x parameters x tokens."""

import pytest

import workloads
from workloads.presets import PRESETS, PUBLISHED_PARAMETERS, SOURCES

NAMES = ["gpt2_small", "gpt2_xl", "llama3_8b", "llama3_70b"]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_are_the_published_ones(name):
    w = workloads.get(name)
    counted = sum(p.numel() for p in w.meta_model().parameters())  # the model itself, on meta
    assert counted == w.parameter_count() == PRESETS[name].parameter_count()
    assert counted == pytest.approx(PUBLISHED_PARAMETERS[name], rel=0.02)
    assert "https://" in SOURCES[name]


def test_exact_counts():
    """Hugging Face's counts of the released checkpoints (tied GPT-2 head counted once)."""
    assert [PRESETS[n].parameter_count() for n in NAMES] == [
        124_439_808,
        1_557_611_200,
        8_030_261_248,
        70_553_706_496,
    ]


@pytest.mark.parametrize("name", NAMES)
def test_flops_are_six_n_t_plus_attention(name):
    """FlopCounterMode on meta against the rule of thumb 6 x parameters x tokens plus the
    attention scores (12 x layers x seq_len x d_model per token). What is left is the
    parameters a model looks up instead of multiplying (an untied input embedding, learned
    positions), norms and biases: at most their share of 6 N T."""
    w = workloads.get(name)
    c, n = w.shape, w.parameter_count()
    tokens = w.batch_size * c.seq_len
    attention = 12 * c.n_layers * c.seq_len * c.d_model * tokens
    looked_up = n - c.matmul_parameter_count()
    flops = w.flops_per_step()
    assert abs(flops - (6 * n * tokens + attention)) <= 6 * looked_up * tokens * 1.0001
    assert abs(flops - (6 * n * tokens + attention)) / (6 * n * tokens) < 0.07


@pytest.mark.parametrize("name", ["gpt2_small", "gpt2_xl"])
def test_gpt2_flops_are_narayanans_formula(name):
    """Narayanan et al. 2021 (Megatron-LM, eq. 3, without recomputation's fourth pass):
    72 B s l h^2 (1 + s/(6h) + V/(12 l h)) FLOPs per step, for GPT blocks."""
    w = workloads.get(name)
    c, b = w.shape, w.batch_size
    s, layers, h, v = c.seq_len, c.n_layers, c.d_model, c.vocab_size
    expected = 72 * b * s * layers * h**2 * (1 + s / (6 * h) + v / (12 * layers * h))
    assert w.flops_per_step() == pytest.approx(expected, rel=1e-12)


def test_batch_and_sequence_length_are_options():
    w = workloads.get("llama3_8b", batch_size=2, seq_len=4096, n_sequences=8)
    assert tuple(w.meta_batch()[0].shape) == (2, 4096)
    base = workloads.get("llama3_8b", n_sequences=8)
    # Twice the sequences at half the length: the same 6 N T, half the attention.
    c = base.shape
    attention_saved = 12 * c.n_layers * c.d_model * (8192 * 8192 - 2 * 4096 * 4096)
    assert base.flops_per_step() - w.flops_per_step() == attention_saved


def test_presets_record_their_options():
    w = workloads.get("gpt2_small", batch_size=4)
    assert w.config() == {"name": "gpt2_small", "batch_size": 4}
    assert w.name == "gpt2_small" and w.parameter_bytes() == 2

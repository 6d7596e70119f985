"""Published language-model shapes as workloads: GPT-2 small and XL, Llama 3 8B and 70B.

Each preset is a :class:`~workloads.transformer.TransformerConfig` with its source; the
batch (sequences per worker and step), sequence length and dtype are options, the shape is
not (use :func:`workloads.transformer.transformer` for any other). They are meant for
timing-only runs and estimates, which build the model on PyTorch's meta device; training one
for real on this machine's CPU works only for the smallest.

| preset | layers | d_model | heads (kv) | MLP | vocab | context | parameters (published) |
|---|---|---|---|---|---|---|---|
| ``gpt2_small`` | 12 | 768 | 12 | 3,072 GELU | 50,257 | 1,024 | 124,439,808 (124M) |
| ``gpt2_xl`` | 48 | 1,600 | 25 | 6,400 GELU | 50,257 | 1,024 | 1,557,611,200 (1,558M) |
| ``llama3_8b`` | 32 | 4,096 | 32 (8) | 14,336 SwiGLU | 128,256 | 8,192 | 8,030,261,248 (8.03B) |
| ``llama3_70b`` | 80 | 8,192 | 64 (8) | 28,672 SwiGLU | 128,256 | 8,192 | 70,553,706,496 (70.6B) |

Examples
--------
>>> w = llama3_70b()
>>> w.parameter_count(), w.batch_size, tuple(w.x_train.shape)
(70553706496, 1, (56, 8192))
>>> PUBLISHED_PARAMETERS["llama3_70b"]
70600000000.0
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from options.declare import declared
from workloads.fields import Alpha, BatchSize, Count, Partition
from workloads.transformer import Dtype, Recompute, TokenLM, TransformerConfig, token_lm

__all__ = [
    "PRESETS",
    "PUBLISHED_PARAMETERS",
    "SOURCES",
    "gpt2_small",
    "gpt2_xl",
    "llama3_70b",
    "llama3_8b",
]

#: Each preset's shape. ``seq_len`` here is the published context, the default option. GPT-2:
#: byte-level BPE vocabulary, learned positions, tied head; Llama 3: a 128K tiktoken
#: vocabulary, rotary positions (theta 500,000), grouped-query attention, untied head.
PRESETS: dict[str, TransformerConfig] = {
    "gpt2_small": TransformerConfig(
        n_layers=12, d_model=768, n_heads=12, vocab_size=50257, seq_len=1024
    ),
    "gpt2_xl": TransformerConfig(
        n_layers=48, d_model=1600, n_heads=25, vocab_size=50257, seq_len=1024
    ),
    "llama3_8b": TransformerConfig(
        n_layers=32,
        d_model=4096,
        n_heads=32,
        kv_heads=8,
        ffn_hidden=14336,
        vocab_size=128256,
        seq_len=8192,
        mlp="swiglu",
        norm="rmsnorm",
        positions="rope",
        bias=False,
        tied=False,
        rope_theta=500_000.0,
    ),
    "llama3_70b": TransformerConfig(
        n_layers=80,
        d_model=8192,
        n_heads=64,
        kv_heads=8,
        ffn_hidden=28672,
        vocab_size=128256,
        seq_len=8192,
        mlp="swiglu",
        norm="rmsnorm",
        positions="rope",
        bias=False,
        tied=False,
        rope_theta=500_000.0,
    ),
}

#: Where each shape and parameter count is published.
SOURCES: dict[str, str] = {
    "gpt2_small": "Radford et al. 2019, 'Language Models are Unsupervised Multitask Learners', "
    "table 2 (12 layers, d_model 768; 1,024 context, 50,257 vocabulary, section 2.3); "
    "the released checkpoint 124M (https://github.com/openai/gpt-2, download_model.py) and "
    "https://huggingface.co/openai-community/gpt2/blob/main/config.json",
    "gpt2_xl": "Radford et al. 2019, table 2 (48 layers, d_model 1,600); the released "
    "checkpoint 1558M (https://github.com/openai/gpt-2) and "
    "https://huggingface.co/openai-community/gpt2-xl/blob/main/config.json (25 heads)",
    "llama3_8b": "Llama Team 2024, 'The Llama 3 Herd of Models', table 3 (32 layers, "
    "d_model 4,096, FFN 14,336, 32 heads, 8 key/value heads, 128K vocabulary, RoPE theta "
    "500,000); https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json "
    "(vocab 128,256; 8,192 context); 8.03B parameters on the model card",
    "llama3_70b": "Llama Team 2024, table 3 (80 layers, d_model 8,192, FFN 28,672, 64 heads, "
    "8 key/value heads); https://huggingface.co/meta-llama/Meta-Llama-3-70B/blob/main/"
    "config.json; 70.6B parameters on the model card",
}

#: The published parameter counts, which ``tests/workloads/test_presets.py`` checks within 2%.
PUBLISHED_PARAMETERS: dict[str, float] = {
    "gpt2_small": 124e6,
    "gpt2_xl": 1558e6,
    "llama3_8b": 8.03e9,
    "llama3_70b": 70.6e9,
}

#: Sequences in the synthetic corpus (7/8 for training): enough for a micro-batch, small at
#: 8,192 tokens a sequence; a timing-only run reads only its shape.
_SEQUENCES = 64

SeqLen = Annotated[int, Field(ge=1, description="tokens per sequence; the published context")]


def _preset(
    name: str,
    *,
    batch_size: int,
    seq_len: int,
    dtype: str,
    recompute: str,
    n_sequences: int,
    partition: str,
    alpha: float,
    data_seed: int,
) -> TokenLM:
    return token_lm(
        name,
        dataclasses.replace(PRESETS[name], seq_len=seq_len, recompute=recompute),
        dtype=dtype,
        n_sequences=n_sequences,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
        data_seed=data_seed,
    )


@declared
def gpt2_small(
    *,
    batch_size: BatchSize = 8,
    seq_len: SeqLen = 1024,
    dtype: Dtype = "bfloat16",
    recompute: Recompute = "none",
    n_sequences: Count = _SEQUENCES,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> TokenLM:
    """GPT-2 small (124M): 12 layers, d_model 768, 12 heads (:data:`SOURCES`)."""
    return _preset(
        "gpt2_small",
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        recompute=recompute,
        n_sequences=n_sequences,
        partition=partition,
        alpha=alpha,
        data_seed=data_seed,
    )


@declared
def gpt2_xl(
    *,
    batch_size: BatchSize = 8,
    seq_len: SeqLen = 1024,
    dtype: Dtype = "bfloat16",
    recompute: Recompute = "none",
    n_sequences: Count = _SEQUENCES,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> TokenLM:
    """GPT-2 XL (1.5B): 48 layers, d_model 1,600, 25 heads (:data:`SOURCES`)."""
    return _preset(
        "gpt2_xl",
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        recompute=recompute,
        n_sequences=n_sequences,
        partition=partition,
        alpha=alpha,
        data_seed=data_seed,
    )


@declared
def llama3_8b(
    *,
    batch_size: BatchSize = 1,
    seq_len: SeqLen = 8192,
    dtype: Dtype = "bfloat16",
    recompute: Recompute = "none",
    n_sequences: Count = _SEQUENCES,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> TokenLM:
    """Llama 3 8B: 32 layers, d_model 4,096, 32 heads, 8 KV heads (:data:`SOURCES`)."""
    return _preset(
        "llama3_8b",
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        recompute=recompute,
        n_sequences=n_sequences,
        partition=partition,
        alpha=alpha,
        data_seed=data_seed,
    )


@declared
def llama3_70b(
    *,
    batch_size: BatchSize = 1,
    seq_len: SeqLen = 8192,
    dtype: Dtype = "bfloat16",
    recompute: Recompute = "none",
    n_sequences: Count = _SEQUENCES,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> TokenLM:
    """Llama 3 70B: 80 layers, d_model 8,192, 64 heads, 8 KV heads (:data:`SOURCES`)."""
    return _preset(
        "llama3_70b",
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        recompute=recompute,
        n_sequences=n_sequences,
        partition=partition,
        alpha=alpha,
        data_seed=data_seed,
    )

"""A small causal transformer trained as a character-level language model.

The default corpus comes from a seeded toy grammar (determiners, adjectives, nouns and verbs
with number agreement), so it is licence-free, any length, and has structure a two-layer model
learns in a few hundred steps. Pass ``text=`` to use your own. Targets are the inputs shifted by
one character; both are int64 token ids of shape ``(n, block_size)``, so accuracy is next-character
accuracy and only ``partition="iid"`` applies (a sequence has no single class label).
"""

from __future__ import annotations

import functools
import math
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from options.declare import OptionError, declared
from workloads.base import Workload
from workloads.fields import Alpha, BatchSize, Count, Partition

__all__ = [
    "CharLM",
    "TinyTransformer",
    "grammar_text",
    "sequence_cross_entropy",
    "tiny_transformer",
]

_SINGULAR = ["the", "a", "one", "this", "every"]
_PLURAL = ["the", "two", "some", "these", "many"]
_ADJECTIVES = ["small", "big", "red", "old", "quiet", "happy", "clever"]
_NOUNS = ["cat", "dog", "bird", "frog", "robot", "horse", "farmer"]
_VERBS = ["see", "chase", "like", "follow", "watch", "find", "help"]


def grammar_text(n_chars: int, seed: int = 0) -> str:
    """At least ``n_chars`` characters of sentences from the toy grammar, then cut to length.

    Examples
    --------
    >>> grammar_text(60, seed=1)
    'every happy farmer finds many birds. some clever horses watc'
    """
    rng = np.random.default_rng(seed)

    def noun_phrase(plural: bool) -> str:
        det = (_PLURAL if plural else _SINGULAR)[rng.integers(5)]
        adjective = _ADJECTIVES[rng.integers(7)] + " " if rng.random() < 0.5 else ""
        return f"{det} {adjective}{_NOUNS[rng.integers(7)]}{'s' if plural else ''}"

    sentences, length = [], 0
    while length < n_chars:
        plural = bool(rng.random() < 0.5)
        verb = _VERBS[rng.integers(7)]
        verb += "" if plural else ("es" if verb.endswith(("ch", "sh")) else "s")
        sentences.append(f"{noun_phrase(plural)} {verb} {noun_phrase(rng.random() < 0.5)}.")
        length += len(sentences[-1]) + 1
    return " ".join(sentences)[:n_chars]


class _Block(nn.Module):
    """Pre-LayerNorm block: causal self-attention then an MLP, each with a residual."""

    future: Tensor

    def __init__(self, d_model: int, n_heads: int, block_size: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )
        causal = torch.ones(block_size, block_size, dtype=torch.bool).triu(1)
        self.register_buffer("future", causal, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        # Explicit matmuls rather than scaled_dot_product_attention: FlopCounterMode counts
        # 0 FLOPs for the CPU SDPA kernel, which would make flops_per_step wrong.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(self.future[:t, :t], float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(attended)
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """Token + learned position embeddings, ``n_layers`` blocks, a LayerNorm and a linear head.

    Maps int64 tokens ``(batch, t)`` to logits ``(batch, t, vocab_size)``.
    """

    def __init__(
        self, vocab_size: int, block_size: int, d_model: int, n_layers: int, n_heads: int
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(block_size, d_model)
        self.blocks = nn.Sequential(
            *[_Block(d_model, n_heads, block_size) for _ in range(n_layers)]
        )
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        where = torch.arange(tokens.shape[1], device=tokens.device)
        return self.head(self.ln(self.blocks(self.tokens(tokens) + self.positions(where))))


def sequence_cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy averaged over every position of every sequence."""
    return nn.functional.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


class CharLM(Workload):
    """A ``Workload`` that also knows its character vocabulary."""

    vocab: str

    def encode(self, text: str) -> Tensor:
        """Token ids (int64) of ``text``; every character must be in ``vocab``."""
        lookup = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([lookup[c] for c in text], dtype=torch.int64)

    def decode(self, tokens: Tensor) -> str:
        """The text of a 1-D tensor of token ids."""
        return "".join(self.vocab[i] for i in tokens.tolist())


@declared
def tiny_transformer(
    *,
    text: str | None = None,
    n_chars: Count = 50_000,
    block_size: Count = 32,
    d_model: Annotated[int, Field(ge=1, description="a multiple of n_heads")] = 48,
    n_layers: Count = 2,
    n_heads: Count = 4,
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1,
    batch_size: BatchSize = 16,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> CharLM:
    """A character-level causal LM on the toy grammar (or on ``text``).

    The corpus is cut into consecutive windows of ``block_size`` characters, each target window
    being its input shifted one character on; the last ``test_fraction`` of them is held out.

    Examples
    --------
    >>> w = tiny_transformer(n_chars=5000)
    >>> tuple(w.x_train.shape), w.x_train.dtype
    ((140, 32), torch.int64)
    >>> w.decode(w.x_train[0][:20])
    'a small cat follows '
    >>> w.make_model(seed=0)(w.x_train[:2]).shape == (2, 32, len(w.vocab))
    True
    """
    if d_model % n_heads:
        raise OptionError(
            f"d_model={d_model} must be a multiple of n_heads={n_heads}; e.g. 48 and 4", "d_model"
        )
    corpus = grammar_text(n_chars, data_seed) if text is None else text
    vocab = "".join(sorted(set(corpus)))
    n_seq = (len(corpus) - 1) // block_size
    n_test = max(1, round(n_seq * test_fraction))
    if n_seq - n_test < 1:
        raise ValueError(
            f"text of {len(corpus)} characters gives {n_seq} sequences of block_size={block_size}; "
            "pass more text or a smaller block_size"
        )
    # Code points via UTF-32 and searchsorted in the sorted vocab: no per-character Python loop.
    code_points = np.frombuffer(corpus.encode("utf-32-le"), dtype=np.uint32)
    vocab_points = np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32)
    tokens = torch.from_numpy(np.searchsorted(vocab_points, code_points).astype(np.int64))
    x = tokens[: n_seq * block_size].view(n_seq, block_size)
    y = tokens[1 : n_seq * block_size + 1].view(n_seq, block_size)
    split = n_seq - n_test

    w = CharLM(
        "tiny_transformer",
        functools.partial(TinyTransformer, len(vocab), block_size, d_model, n_layers, n_heads),
        (x[:split], y[:split]),
        (x[split:], y[split:]),
        sequence_cross_entropy,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
        accuracy=True,
    )
    w.vocab = vocab
    return w

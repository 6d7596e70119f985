"""A decoder-only transformer language model of any size, on a seeded synthetic token corpus.

One :class:`TransformerConfig` describes GPT-2 (LayerNorm, GELU MLP, learned positions, biases,
tied embeddings) and Llama 3 (RMSNorm, SwiGLU MLP, rotary positions, grouped-query attention,
no biases, untied head) alike; the presets of :mod:`workloads.presets` are published shapes.
The model trains for real at small sizes and builds on PyTorch's meta device at any size
(``workload.meta_model()``: no storage, so ``llama3_70b`` costs nothing), which is what FLOP
counting, memory estimates and timing-only runs use.

The corpus is a seeded random Markov chain over the vocabulary: each token has ``branching``
possible successors, drawn uniformly, so a model that learns the table reaches a loss of
``log(branching)`` nats per token from ``log(vocab_size)`` at initialisation. Targets are
the inputs shifted by one token; evaluation is the held-out loss (and next-token accuracy).

FLOPs (``FlopCounterMode``, attention as explicit matmuls, as :mod:`workloads.tiny_transformer`
does) per token of one forward and backward:

    6 * N_matmul + 12 * n_layers * seq_len * d_model

``N_matmul`` is every parameter a matmul uses (all but the input embedding when the head is
untied, the learned positions, norms and biases); the second term is the attention scores
``Q K^T`` and ``A V`` (``2 * 2 * seq_len * d_model`` per token and layer forward, x3 with
backward), counted over the whole square as the matmuls compute it, causal mask or not.
Against the rule of thumb ``6 * N`` per token, the attention term is ``2 * n_layers *
seq_len * d_model / N`` of it: 15% for GPT-2 small at 1,024 tokens, 27% for Llama 3 8B at
8,192 (see ``docs/scale.md``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from options.declare import OneOf, OptionError, declared
from workloads.base import Workload, count_flops
from workloads.fields import Alpha, BatchSize, Count, Partition
from workloads.tiny_transformer import sequence_cross_entropy

__all__ = [
    "DTYPES",
    "DecoderLM",
    "TokenLM",
    "TransformerConfig",
    "markov_tokens",
    "token_lm",
    "transformer",
]

#: Parameter dtypes a model may be built in.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


#: The choices of a config's named parts.
_CHOICES: dict[str, tuple[str, ...]] = {
    "mlp": ("gelu", "swiglu"),
    "norm": ("layernorm", "rmsnorm"),
    "positions": ("learned", "rope"),
    "recompute": ("none", "selective", "full"),
}


@dataclass(frozen=True)
class TransformerConfig:
    """The shape of a decoder-only transformer.

    Attributes
    ----------
    n_layers, d_model, n_heads, vocab_size, seq_len : int
        Blocks, width, attention heads, vocabulary, tokens per sequence.
    kv_heads : int
        Key/value heads (grouped-query attention); ``n_heads`` is plain multi-head attention.
    ffn_hidden : int
        The MLP's hidden width (``4 * d_model`` in GPT-2).
    mlp : {"gelu", "swiglu"}
        ``Linear, GELU, Linear`` or Llama's ``down(silu(gate(x)) * up(x))``.
    norm : {"layernorm", "rmsnorm"}
    positions : {"learned", "rope"}
        Learned position embeddings (``seq_len`` of them) or rotary embeddings.
    bias : bool
        Biases in every linear layer but the head.
    tied : bool
        The head shares the token embedding's matrix.
    rope_theta : float
        Rotary base frequency.
    recompute : {"none", "selective", "full"}
        Activation recomputation (Korthikanti et al. 2022): ``"selective"`` keeps no
        attention scores and recomputes ``softmax(Q K^T) V`` in backward, ``"full"`` keeps
        only each block's input and recomputes the block (``torch.utils.checkpoint``); both
        trade FLOPs (:meth:`flops_per_sequence`) for memory (:meth:`activation_bytes`).

    Examples
    --------
    >>> c = TransformerConfig(n_layers=12, d_model=768, n_heads=12, vocab_size=50257,
    ...                       seq_len=1024)
    >>> c.parameter_count()  # GPT-2 small
    124439808
    """

    n_layers: int
    d_model: int
    n_heads: int
    vocab_size: int
    seq_len: int
    kv_heads: int = 0  # 0: n_heads
    ffn_hidden: int = 0  # 0: 4 * d_model
    mlp: str = "gelu"
    norm: str = "layernorm"
    positions: str = "learned"
    bias: bool = True
    tied: bool = True
    rope_theta: float = 10_000.0
    recompute: str = "none"

    def __post_init__(self) -> None:
        for field, value in (
            ("mlp", self.mlp),
            ("norm", self.norm),
            ("positions", self.positions),
            ("recompute", self.recompute),
        ):
            if value not in _CHOICES[field]:
                raise OptionError(
                    f"{field}={value!r} is unknown; use one of {', '.join(_CHOICES[field])}", field
                )
        if not self.kv_heads:
            object.__setattr__(self, "kv_heads", self.n_heads)
        if not self.ffn_hidden:
            object.__setattr__(self, "ffn_hidden", 4 * self.d_model)
        if self.d_model % self.n_heads:
            raise OptionError(
                f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}; "
                "e.g. 64 and 4",
                "d_model",
            )
        if self.n_heads % self.kv_heads:
            raise OptionError(
                f"n_heads={self.n_heads} must be a multiple of kv_heads={self.kv_heads}; "
                f"e.g. kv_heads={self.n_heads}",
                "kv_heads",
            )
        if self.positions == "rope" and (self.d_model // self.n_heads) % 2:
            raise OptionError(
                f"rotary positions need an even head size, not d_model/n_heads="
                f"{self.d_model // self.n_heads}; change d_model or n_heads",
                "positions",
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def parameter_count(self) -> int:
        """Parameters, in closed form (what the model's ``numel`` sums to)."""
        d, f, kv = self.d_model, self.ffn_hidden, self.kv_heads * self.head_dim
        b = int(self.bias)
        attention = d * (d + 2 * kv) + b * (d + 2 * kv) + d * d + b * d
        if self.mlp == "gelu":
            mlp = 2 * d * f + b * (f + d)
        else:
            mlp = 3 * d * f + b * (2 * f + d)
        norm = 2 * d if self.norm == "layernorm" else d
        block = attention + mlp + 2 * norm
        embeddings = self.vocab_size * d * (1 if self.tied else 2)
        positions = self.seq_len * d if self.positions == "learned" else 0
        return self.n_layers * block + embeddings + positions + norm

    def block_matmul_parameter_count(self) -> int:
        """Matmul parameters of one block (no norms, no biases)."""
        d, f, kv = self.d_model, self.ffn_hidden, self.kv_heads * self.head_dim
        return d * (d + 2 * kv) + d * d + (2 if self.mlp == "gelu" else 3) * d * f

    def matmul_parameter_count(self) -> int:
        """Parameters a matmul multiplies: all but the input embedding (when untied), the
        learned positions, norms and biases (which FlopCounterMode does not count)."""
        return self.n_layers * self.block_matmul_parameter_count() + self.vocab_size * self.d_model

    def flops_per_sequence(self) -> int:
        """Forward + backward FLOPs of one sequence, as FlopCounterMode counts them: 6 per
        matmul parameter and token, plus the attention scores (module docstring).

        Recomputation adds the forward that ``torch.utils.checkpoint`` redoes, which stops
        once backward has what it needs: ``"selective"`` redoes ``Q K^T`` (``2*s*s*d`` per
        layer; ``A V``'s output is not needed), ``"full"`` each block but its last matmul
        (the MLP's down projection, whose output only feeds the residual).
        """
        s, d, layers = self.seq_len, self.d_model, self.n_layers
        flops = 6 * self.matmul_parameter_count() * s + 12 * layers * s * s * d
        if self.recompute == "selective":
            flops += 2 * layers * s * s * d
        elif self.recompute == "full":
            redone = self.block_matmul_parameter_count() - self.ffn_hidden * d
            flops += layers * (2 * redone * s + 4 * s * s * d)
        return flops

    def activation_bytes_per_layer(self, batch: int, element_size: int = 2) -> int:
        """Bytes one block keeps for backward over ``batch`` sequences (no recomputation).

        Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
        Models", section 4.1) count ``s*b*h*(34 + 5*a*s/h)`` bytes per GPT layer in 16-bit
        (``s`` sequence, ``b`` batch, ``h`` width, ``a`` heads), of which dropout takes
        ``2*s*b*h + 3*a*s*s*b``. Without dropout, with ``g = kv_heads/n_heads`` and ``f`` the
        MLP width, the same accounting in units of ``element_size`` bytes is ``s*b*h`` times
        ``4 + 2g`` (attention: norm input, Q, K, V, output projection input) plus ``2`` (the
        MLP's norm input and first linear input) plus ``2f/h`` (GELU: its input and output)
        or ``4f/h`` (SwiGLU: gate, up, silu(gate), product), and ``a*s*s*b`` for the
        softmax's output. For GPT (``g = 1, f = 4h``, 2 bytes) that is Korthikanti's ``34 +
        5as/h`` less dropout's ``2 + 3as/h``.

        >>> gpt = TransformerConfig(n_layers=1, d_model=8, n_heads=2, vocab_size=10, seq_len=4)
        >>> gpt.activation_bytes_per_layer(batch=3) == 4 * 3 * 8 * (34 + 5 * 2 * 4 / 8) - (
        ...     2 * 4 * 3 * 8 + 3 * 2 * 4 * 4 * 3)
        True
        """
        s, b, h, a = self.seq_len, batch, self.d_model, self.n_heads
        g = self.kv_heads / self.n_heads
        mlp = (2 if self.mlp == "gelu" else 4) * self.ffn_hidden / h
        per_sbh = 4 + 2 * g + 2 + mlp
        return round(element_size * (s * b * h * per_sbh + a * s * s * b))

    def activation_bytes(self, batch: int, element_size: int = 2) -> int:
        """Bytes the whole model keeps for backward over ``batch`` sequences.

        Every block's :meth:`activation_bytes_per_layer` (without the softmax's ``a*s*s*b``
        under ``"selective"`` recomputation; under ``"full"``, each block's input,
        ``s*b*h`` elements, plus one block's activations while it is recomputed), the final
        norm's and head's inputs (``2*s*b*h`` elements), and the logits in fp32 for the loss
        (``4*s*b*v`` bytes, as Korthikanti et al. count the output layer).
        """
        s, b, h = self.seq_len, batch, self.d_model
        layer = self.activation_bytes_per_layer(batch, element_size)
        head = element_size * 2 * s * b * h + 4 * s * b * self.vocab_size
        if self.recompute == "selective":
            layer -= element_size * self.n_heads * s * s * b
        elif self.recompute == "full":
            return self.n_layers * element_size * s * b * h + layer + head
        return self.n_layers * layer + head


def _norm(config: TransformerConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=1e-5)
    return nn.LayerNorm(config.d_model, eps=1e-5)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding, the "rotate half" form of Llama's reference code."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class _Attention(nn.Module):
    """Causal self-attention with grouped-query heads, as explicit matmuls.

    Explicit matmuls rather than ``scaled_dot_product_attention``: FlopCounterMode counts
    0 FLOPs for the CPU SDPA kernel (see :mod:`workloads.tiny_transformer`).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        kv = config.kv_heads * config.head_dim
        self.qkv = nn.Linear(config.d_model, config.d_model + 2 * kv, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)

    def forward(self, x: Tensor) -> Tensor:
        c = self.config
        b, t, d = x.shape
        hd, kv = c.head_dim, c.kv_heads
        q, k, v = self.qkv(x).split([d, kv * hd, kv * hd], dim=-1)
        q = q.view(b, t, c.n_heads, hd).transpose(1, 2)
        k = k.view(b, t, kv, hd).transpose(1, 2)
        v = v.view(b, t, kv, hd).transpose(1, 2)
        if c.positions == "rope":
            inv_freq = c.rope_theta ** -(
                torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd
            )
            angles = torch.outer(torch.arange(t, device=x.device, dtype=torch.float32), inv_freq)
            angles = torch.cat((angles, angles), dim=-1)
            cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if c.recompute == "selective":  # Korthikanti et al.'s selective recomputation
            attended = checkpoint(self._core, q, k, v, use_reentrant=False)
        else:
            attended = self._core(q, k, v)
        return self.proj(attended.transpose(1, 2).reshape(b, t, d))

    def _core(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``softmax(mask(Q K^T / sqrt(d_head))) V``: what selective recomputation redoes."""
        c = self.config
        if c.kv_heads != c.n_heads:
            group = c.n_heads // c.kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        t = q.shape[-2]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(c.head_dim)
        future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
        return scores.masked_fill(future, float("-inf")).softmax(-1) @ v


class _MLP(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        f = config.ffn_hidden
        self.up = nn.Linear(config.d_model, 2 * f if self.swiglu else f, bias=config.bias)
        self.down = nn.Linear(f, config.d_model, bias=config.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.swiglu:
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(nn.functional.silu(gate) * up)
        return self.down(nn.functional.gelu(self.up(x)))


class _Block(nn.Module):
    """Pre-norm block: attention then MLP, each with a residual."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.norm1, self.attention = _norm(config), _Attention(config)
        self.norm2, self.mlp = _norm(config), _MLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _embedding(rows: int, width: int) -> nn.Embedding:
    """An embedding left uninitialised (``_init_weights`` draws it): its own ``normal_`` on
    the meta device would load torch's reference kernels, ~1 s, on a process's first build."""
    return nn.Embedding(rows, width, _weight=torch.empty(rows, width))


class DecoderLM(nn.Module):
    """Token embeddings (and learned positions), ``n_layers`` blocks, a final norm and the
    head; int64 tokens ``(batch, t)`` to logits ``(batch, t, vocab_size)``.

    Weights start as GPT-2's do: normal with standard deviation 0.02, the residual
    projections scaled by ``1/sqrt(2 * n_layers)``, biases zero.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens = _embedding(config.vocab_size, config.d_model)
        self.positions = (
            _embedding(config.seq_len, config.d_model) if config.positions == "learned" else None
        )
        self.blocks = nn.Sequential(*[_Block(config) for _ in range(config.n_layers)])
        self.norm = _norm(config)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tied:
            self.head.weight = self.tokens.weight
        self._init_weights()

    def _init_weights(self) -> None:
        if self.tokens.weight.is_meta:
            return  # nothing to draw on the meta device (and its normal_ is slow: ~3 ms each)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = residual_std if name.endswith(("proj", "down")) else 0.02
                nn.init.normal_(module.weight, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.tokens(tokens)
        if self.positions is not None:
            x = x + self.positions(torch.arange(tokens.shape[1], device=tokens.device))
        if self.config.recompute == "full" and torch.is_grad_enabled():
            for block in self.blocks:  # keep each block's input only; redo it in backward
                x = checkpoint(block, x, use_reentrant=False)
        else:
            x = self.blocks(x)
        return self.head(self.norm(x))


def _build_model(config: TransformerConfig, dtype: str) -> nn.Module:
    """The model in ``dtype`` (initialised in fp32, so both dtypes start from one draw)."""
    return DecoderLM(config).to(DTYPES[dtype])


def markov_tokens(
    n_sequences: int, length: int, vocab_size: int, branching: int = 2, seed: int = 0
) -> Tensor:
    """``(n_sequences, length)`` int64 tokens of a seeded random Markov chain: every token
    has ``branching`` successors, drawn from the vocabulary once, and each step picks one
    uniformly. Vectorised over sequences: one numpy step per position.

    Examples
    --------
    >>> x = markov_tokens(3, 6, vocab_size=50, seed=1)
    >>> tuple(x.shape), x.dtype, bool((x < 50).all())
    ((3, 6), torch.int64, True)
    >>> bool((markov_tokens(3, 6, 50, seed=1) == x).all())
    True
    """
    rng = np.random.default_rng([seed, vocab_size, branching])
    successors = rng.integers(vocab_size, size=(vocab_size, branching))
    tokens = np.empty((n_sequences, length), dtype=np.int64)
    tokens[:, 0] = rng.integers(vocab_size, size=n_sequences)
    choices = rng.integers(branching, size=(n_sequences, length))
    for t in range(1, length):
        tokens[:, t] = successors[tokens[:, t - 1], choices[:, t]]
    return torch.from_numpy(tokens)


class TokenLM(Workload):
    """A ``Workload`` that knows its transformer's shape: exact parameter count, the
    published activation formula, and FLOPs cached per shape across instances."""

    #: The model's shape (``config()`` is the workload's record, as for every workload).
    shape: TransformerConfig
    dtype: str
    #: What :func:`devices.check_fits` suggests when activations are what does not fit.
    activation_hint = "a smaller batch_size or seq_len, or recompute='selective' or 'full'"

    def parameter_count(self) -> int:
        return self.shape.parameter_count()

    def parameter_bytes(self) -> int:
        return DTYPES[self.dtype].itemsize

    def activation_bytes(self) -> int:
        """:meth:`TransformerConfig.activation_bytes` of a micro-batch, in the model's dtype
        (Korthikanti et al. 2022's accounting; see there)."""
        return self.shape.activation_bytes(self.batch_size, DTYPES[self.dtype].itemsize)

    def flops_per_step(self) -> float:
        """FlopCounterMode's count on the meta device, cached per (shape, batch)."""
        return _transformer_flops(self.shape, self.batch_size, self.dtype)

    @property
    def n_blocks(self) -> int:
        """Identical blocks the model repeats (what :func:`devices.roofline` extends from
        one and two of them)."""
        return self.shape.n_layers

    def with_blocks(self, n_blocks: int) -> TokenLM:
        """The same workload with a model of ``n_blocks`` blocks (sharing the data)."""
        clone = copy.copy(self)
        clone.shape = dataclasses.replace(self.shape, n_layers=n_blocks)
        clone.model_factory = functools.partial(_build_model, clone.shape, self.dtype)
        return clone


@functools.lru_cache(maxsize=64)
def _transformer_flops(config: TransformerConfig, batch_size: int, dtype: str) -> float:
    """FlopCounterMode's count for the model, from models of one and two blocks: blocks are
    identical, so the count is ``f(1) + (n_layers - 1) * (f(2) - f(1))`` exactly (a test
    checks it against the whole model), and a 70B model counts in a second, not ten."""
    if config.n_layers <= 2:
        return _count_on_meta(config, batch_size, dtype)
    one = _count_on_meta(dataclasses.replace(config, n_layers=1), batch_size, dtype)
    two = _count_on_meta(dataclasses.replace(config, n_layers=2), batch_size, dtype)
    return one + (config.n_layers - 1) * (two - one)


def _count_on_meta(config: TransformerConfig, batch_size: int, dtype: str) -> float:
    model = _build_model_on_meta(config, dtype)
    x = torch.empty(batch_size, config.seq_len, dtype=torch.int64, device="meta")
    return count_flops(sequence_cross_entropy, model, x, x)


def _build_model_on_meta(config: TransformerConfig, dtype: str) -> nn.Module:
    with torch.device("meta"):
        return _build_model(config, dtype)


def token_lm(
    name: str,
    config: TransformerConfig,
    *,
    dtype: str = "float32",
    n_sequences: int = 256,
    branching: int = 2,
    test_fraction: float = 0.125,
    batch_size: int = 8,
    partition: str = "iid",
    alpha: float = 0.5,
    data_seed: int = 0,
) -> TokenLM:
    """The workload of ``config`` on :func:`markov_tokens` (what every transformer builder,
    preset or not, returns)."""
    n_test = max(1, round(n_sequences * test_fraction))
    if n_sequences - n_test < batch_size:
        raise OptionError(
            f"n_sequences={n_sequences} leaves {n_sequences - n_test} training sequences, "
            f"fewer than batch_size={batch_size}; raise n_sequences",
            "n_sequences",
        )
    tokens = markov_tokens(n_sequences, config.seq_len + 1, config.vocab_size, branching, data_seed)
    x, y = tokens[:, :-1], tokens[:, 1:]
    split = n_sequences - n_test
    w = TokenLM(
        name,
        functools.partial(_build_model, config, dtype),
        (x[:split], y[:split]),
        (x[split:], y[split:]),
        sequence_cross_entropy,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
        accuracy=True,
    )
    w.shape, w.dtype = config, dtype
    return w


#: The parameter dtype option.
Dtype = Annotated[str, OneOf(tuple(DTYPES)), Field(description="the parameters' dtype")]
#: The activation recomputation option (:attr:`TransformerConfig.recompute`).
Recompute = Annotated[
    str,
    OneOf(_CHOICES["recompute"]),
    Field(description="activation recomputation: trades FLOPs for memory"),
]


@declared
def transformer(
    *,
    n_layers: Count = 2,
    d_model: Annotated[int, Field(ge=1, description="a multiple of n_heads")] = 64,
    n_heads: Count = 4,
    kv_heads: Annotated[int, Field(ge=0, description="0: n_heads (no grouped-query)")] = 0,
    ffn_multiplier: Annotated[float, Field(gt=0, description="MLP width / d_model")] = 4.0,
    vocab_size: Annotated[int, Field(ge=2)] = 256,
    seq_len: Count = 32,
    mlp: Annotated[str, OneOf(_CHOICES["mlp"])] = "gelu",
    norm: Annotated[str, OneOf(_CHOICES["norm"])] = "layernorm",
    positions: Annotated[str, OneOf(_CHOICES["positions"])] = "learned",
    bias: bool = True,
    tied: bool = True,
    recompute: Recompute = "none",
    dtype: Dtype = "float32",
    n_sequences: Count = 256,
    branching: Count = 2,
    batch_size: BatchSize = 8,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> TokenLM:
    """A decoder-only language model of any shape on a seeded Markov-chain corpus.

    GPT-2-like by default (LayerNorm, GELU, learned positions, tied embeddings);
    ``mlp="swiglu", norm="rmsnorm", positions="rope", bias=False, tied=False`` and
    ``kv_heads`` make it Llama-like. ``ffn_multiplier`` sets the MLP width (rounded).

    Examples
    --------
    >>> w = transformer(n_sequences=64)
    >>> tuple(w.x_train.shape), w.parameter_count()
    ((56, 32), 118528)
    >>> w.make_model(seed=0)(w.x_train[:2]).shape
    torch.Size([2, 32, 256])
    """
    config = TransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        vocab_size=vocab_size,
        seq_len=seq_len,
        kv_heads=kv_heads,
        ffn_hidden=max(1, round(ffn_multiplier * d_model)),
        mlp=mlp,
        norm=norm,
        positions=positions,
        bias=bias,
        tied=tied,
        recompute=recompute,
    )
    return token_lm(
        "transformer",
        config,
        dtype=dtype,
        n_sequences=n_sequences,
        branching=branching,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
        data_seed=data_seed,
    )

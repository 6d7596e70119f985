"""``powersgd``: rank-``r`` power iteration, two all-reduces (Vogels et al., 2019).

As torch's ``powerSGD_hook``: every tensor with more than one dimension is viewed as a
matrix ``M`` (``shape[0] x rest``); 1-D tensors (biases, norms) travel uncompressed. One
call, with ``Q`` (``m x r``) shared by every rank::

    P = M Q                 # per matrix, n x r
    all-reduce mean [P..., 1-D tensors]       (round 1)
    P = orthonormal basis of P  (torch.linalg.qr: deterministic, and rank-deficient P
                                 still gives an orthonormal basis, where Gram-Schmidt
                                 divides by zero)
    Q = M^T P               # m x r
    all-reduce mean [Q...]                    (round 2)
    M ~ P Q^T

Bytes a rank sends: ``4 * (sum over matrices of (n + m) * r + sum of 1-D sizes)``, with
``r`` clamped to ``min(n, m)`` per matrix. Error feedback keeps ``M - P Q_local^T`` (the
paper's local decode: its mean over ranks is the aggregated approximation by linearity;
torch's hook subtracts the aggregated one instead). With ``warm_start`` the next call starts
from this call's aggregated ``Q`` (one power-iteration step per call, continued); otherwise
``Q`` is redrawn each call. Every draw of ``Q`` comes from a generator seeded identically
on every rank (run seed, salt, call counter): ``Q`` must be the same everywhere.

The point-to-point form (:meth:`PowerSGDCodec.encode`) sends a rank's local approximation:
the orthonormal ``P``, its ``Q = M^T P`` and the 1-D tensors, one float32 tensor of the
same byte count; :meth:`~PowerSGDCodec.decode` returns ``P Q^T``.

Examples
--------
>>> from strategies.compression.cost import CostModel
>>> codec = PowerSGDCodec("powersgd", {"rank": 1, "error_feedback": True, "warm_start": True},
...                       numel=8, shapes=[(2, 3), (2,)], seed=0, rank=0, salt="",
...                       cost=CostModel(0.0, 0.0))
>>> rank_one = torch.outer(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0, -1.0]))
>>> flat = torch.cat([rank_one.reshape(-1), torch.tensor([5.0, 6.0])])
>>> torch.allclose(codec.decode(codec.encode(flat)), flat, atol=1e-6)
True
>>> codec.payload_nbytes()  # 4 * ((2 + 3) * 1 + 2)
28
"""

from __future__ import annotations

import math
from typing import Any

import torch

from strategies.checks import Group
from strategies.compression.codec import Codec, SubProgram, charge, generator
from strategies.handles import Handle

__all__ = ["Matrix", "PowerSGDCodec", "orthonormalize"]


class Matrix:
    """One compressed tensor: its span in the flat tensor, its ``n x m`` view and rank."""

    __slots__ = ("start", "n", "m", "r")

    def __init__(self, start: int, n: int, m: int, r: int) -> None:
        self.start, self.n, self.m, self.r = start, n, m, r

    @property
    def stop(self) -> int:
        return self.start + self.n * self.m

    def view(self, flat: torch.Tensor) -> torch.Tensor:
        return flat[self.start : self.stop].view(self.n, self.m)


def orthonormalize(p: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (``n x r``) of ``p``'s columns' span, ``n >= r``.

    Examples
    --------
    >>> q = orthonormalize(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]))
    >>> torch.allclose(q.T @ q, torch.eye(2))
    True
    """
    return torch.linalg.qr(p, mode="reduced").Q


class PowerSGDCodec(Codec):
    """Rank-``r`` PowerSGD over the matrices among ``shapes``; 1-D tensors sent as they are."""

    rounds = 2

    def __init__(self, name: str, options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, options, **kwargs)
        self.warm_start = bool(options["warm_start"])
        self.matrices: list[Matrix] = []
        self.vectors: list[tuple[int, int]] = []  # (start, stop) of the 1-D tensors
        start = 0
        for shape in self.shapes:
            size = math.prod(shape)
            if len(shape) > 1 and size > 0:
                n, m = shape[0], size // shape[0]
                self.matrices.append(Matrix(start, n, m, min(int(options["rank"]), n, m)))
            elif size > 0:
                self.vectors.append((start, start + size))
            start += size
        self.p_numel = sum(mat.n * mat.r for mat in self.matrices)
        self.q_numel = sum(mat.m * mat.r for mat in self.matrices)
        self.v_numel = sum(stop - start for start, stop in self.vectors)
        self.calls = 0
        self.q: list[torch.Tensor] | None = None  # the warm-start memory

    # -- sizes and costs ------------------------------------------------------------------
    def payload_nbytes(self) -> int:
        """Bytes a rank sends per call (both rounds, or the point-to-point payload)."""
        return 4 * (self.p_numel + self.q_numel + self.v_numel)

    def _matmul_flops(self) -> float:
        return float(sum(2 * mat.n * mat.m * mat.r for mat in self.matrices))

    def encode_flops(self) -> float:
        return 2 * self._matmul_flops()  # P = M Q and Q = M^T P

    def decode_flops(self) -> float:
        return self._matmul_flops()  # P Q^T

    # -- the power iteration ----------------------------------------------------------------
    def _start_q(self) -> list[torch.Tensor]:
        call, self.calls = self.calls, self.calls + 1
        if self.warm_start and self.q is not None:
            return self.q
        # Rank-free on purpose: Q must be the same on every rank.
        g = generator(self.seed, self.salt, "powersgd", 0 if self.warm_start else call)
        return [torch.randn(mat.m, mat.r, generator=g) for mat in self.matrices]

    def _round1(self, m: torch.Tensor, q: list[torch.Tensor]) -> torch.Tensor:
        """``[P..., 1-D tensors]`` in one buffer."""
        parts = [(mat.view(m) @ qi).reshape(-1) for mat, qi in zip(self.matrices, q)]
        parts += [m[start:stop] for start, stop in self.vectors]
        return torch.cat(parts) if parts else torch.zeros(0)

    def _split_p(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        return _split(buffer, [(mat.n, mat.r) for mat in self.matrices])

    def _split_q(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        return _split(buffer, [(mat.m, mat.r) for mat in self.matrices])

    def _assemble(
        self, p: list[torch.Tensor], q: list[torch.Tensor], vectors: torch.Tensor
    ) -> torch.Tensor:
        """The flat tensor ``[P Q^T per matrix, 1-D tensors]`` in the original layout."""
        out = torch.empty(self.numel, dtype=torch.float32)
        for mat, pi, qi in zip(self.matrices, p, q):
            torch.matmul(pi, qi.T, out=mat.view(out))
        offset = 0
        for start, stop in self.vectors:
            out[start:stop] = vectors[offset : offset + stop - start]
            offset += stop - start
        return out

    # -- point to point -------------------------------------------------------------------
    def buffers(self) -> list[torch.Tensor]:
        return [torch.empty(self.p_numel + self.q_numel + self.v_numel, dtype=torch.float32)]

    def _encode(self, flat: torch.Tensor) -> list[torch.Tensor]:
        m = self.feedback.compensate(flat)
        q = self._start_q()
        round1 = self._round1(m, q)
        p = [orthonormalize(pi) for pi in self._split_p(round1)]
        q_local = [mat.view(m).T @ pi for mat, pi in zip(self.matrices, p)]
        vectors = round1[self.p_numel :]
        self.feedback.update(m, self._assemble(p, q_local, vectors))
        if self.warm_start:
            self.q = q_local
        parts = [t.reshape(-1) for t in (*p, *q_local)] + [vectors]
        return [torch.cat(parts)]

    def _decode(self, payload: list[torch.Tensor]) -> torch.Tensor:
        (buffer,) = payload
        p = self._split_p(buffer[: self.p_numel])
        q = self._split_q(buffer[self.p_numel : self.p_numel + self.q_numel])
        return self._assemble(p, q, buffer[self.p_numel + self.q_numel :])

    # -- collectives ----------------------------------------------------------------------
    def start(
        self, w: Any, tensor: torch.Tensor, group: Group | None = None, *, algorithm: str = "auto"
    ) -> Handle[torch.Tensor]:
        raise ValueError(
            "compression powersgd needs two collective rounds (P, then Q), which one handle "
            "cannot start; use mean = yield from codec.all_reduce(w, tensor, group)"
        )

    def _start(
        self, w: Any, flat: torch.Tensor, group: Group | None, size: int, algorithm: str
    ) -> Handle[torch.Tensor]:
        raise AssertionError("unreachable: PowerSGDCodec overrides start and all_reduce")

    def all_reduce(
        self, w: Any, tensor: torch.Tensor, group: Group | None = None, *, algorithm: str = "auto"
    ) -> SubProgram:
        """Two all-reduces (see the module docstring); encode time is charged half before
        each round's matmul, decode time after."""
        flat = self._flat(tensor, "all_reduce")
        half = self._matmul_flops()
        yield from charge(w, self.cost.encode_seconds(self.numel, half))
        m = self.feedback.compensate(flat)
        q = self._start_q()
        round1 = self._round1(m, q)
        # The 1-D tensors travel whole: their local decode is themselves (no residual).
        local_vectors = round1[self.p_numel :].clone()
        self._count(self.payload_nbytes())
        round1 = yield w.comm.all_reduce(round1, op="mean", group=group, algorithm=algorithm)
        yield from charge(w, self.cost.encode_seconds(0, half))
        p = [orthonormalize(pi) for pi in self._split_p(round1)]
        vectors = round1[self.p_numel :]
        q_local = [mat.view(m).T @ pi for mat, pi in zip(self.matrices, p)]
        self.feedback.update(m, self._assemble(p, q_local, local_vectors))
        if self.matrices:  # nothing to compress: the first round carried everything
            round2 = torch.cat([qi.reshape(-1) for qi in q_local])
            round2 = yield w.comm.all_reduce(round2, op="mean", group=group, algorithm=algorithm)
            q_mean = self._split_q(round2)
        else:
            q_mean = []
        if self.warm_start:
            self.q = q_mean
        yield from charge(w, self.decode_seconds())
        return self._assemble(p, q_mean, vectors).reshape(tensor.shape)


def _split(buffer: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Consecutive views of ``buffer`` with the given matrix shapes."""
    out, offset = [], 0
    for rows, cols in shapes:
        out.append(buffer[offset : offset + rows * cols].view(rows, cols))
        offset += rows * cols
    return out

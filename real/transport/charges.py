"""The bytes a rank sends in a collective, by the algorithm its library runs.

The library hides its messages, so ``real`` computes them: the per-rank sends of the algorithm
the library runs for that collective (the ``gloo`` and ``nccl`` rules of
``sim.collectives.rules``, whose sources ``docs/collectives.md`` cites). A test checks every
collective against the simulator's schedules under the same rule, rank by rank, so the two
backends charge the same traffic for the same call.

* gloo (CPU): all-reduce a ring, ``2 (n-1)/n`` of the buffer; reduce-scatter a full ring
  all-reduce (the same); all-gather a ring, ``n-1`` inputs; broadcast a binomial tree (a rank
  sends the whole buffer once per child); reduce a ring reduce-scatter, then each rank but the
  root sends its reduced chunk, ``1/n``, to the root.
* nccl (GPU): rings everywhere: all-reduce ``2 (n-1)/n`` (NCCL's tree, which its cost model
  picks for some sizes, sends about as much and is not told apart here), broadcast and reduce
  pipelined chains (every rank but the chain's last sends the buffer). This transport runs a
  reduce-scatter as an all-reduce on both libraries (uneven chunks), and is charged as one.

>>> sent_bytes("reduce", "gloo", n=4, index=0, root=1, nbytes=8.0)
8.0
>>> sent_bytes("reduce", "gloo", n=4, index=1, root=1, nbytes=8.0)
6.0
>>> [sent_bytes("broadcast", "gloo", n=5, index=i, root=0, nbytes=1.0) for i in range(5)]
[3.0, 1.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

__all__ = ["sent_bytes"]


def sent_bytes(kind: str, library: str, *, n: int, index: int, root: int, nbytes: float) -> float:
    """What the rank at ``index`` of an ``n``-rank group sends in collective ``kind`` of a
    buffer of ``nbytes`` (the input, per rank), ``root`` the rooted ones' root index, when
    ``library`` (``"gloo"``, or ``"nccl"``) runs it."""
    if n < 2 or kind == "barrier":
        return 0.0
    if kind in ("all_reduce", "reduce_scatter"):
        return 2.0 * (n - 1) / n * nbytes
    if kind == "all_gather":
        return (n - 1) * nbytes
    relative = (index - root) % n  # 0 is the root
    if library == "nccl":
        if kind == "broadcast":  # chain root, root+1, ..., root-1: the last sends nothing
            return 0.0 if relative == n - 1 else float(nbytes)
        if kind == "reduce":  # chain root+1, ..., root: every rank but the root sends
            return 0.0 if relative == 0 else float(nbytes)
    elif kind == "broadcast":  # binomial: in round k, relative ranks below 2**k send
        children = sum(1 for k in range((n - 1).bit_length()) if relative < 2**k < n - relative)
        return children * nbytes
    elif kind == "reduce":
        return (n - 1) / n * nbytes + (0.0 if relative == 0 else nbytes / n)
    raise ValueError(f"no charge for collective {kind!r} on {library!r}")

"""What ``auto`` imitates: a rule that picks each collective's algorithm, named for its source.

* ``commsim``: the simulator's own size rule (:func:`sim.collectives.select.choose`), the
  default: halving-doubling below 256 KiB per rank, rings above, ``hierarchical`` on nodes.
* ``gloo``: what PyTorch's gloo backend runs on CPU tensors, whatever the size (gloo has no
  size rule and PyTorch sets none): ring all-reduce and all-gather, binomial-tree broadcast,
  ring reduce-scatter then straight to the root for reduce, a full all-reduce for
  reduce-scatter, direct all-to-all, gather and scatter, dissemination barrier.
* ``nccl``: what NCCL runs on GPU tensors: ring or tree all-reduce by NCCL's cost model
  (:mod:`sim.collectives.nccl`), rings (pipelined chains for broadcast and reduce)
  elsewhere, direct send/recv for all-to-all, gather and scatter, a one-element all-reduce
  for the barrier; the message split over ``channels`` (``"nccl:channels=4"``; default 2).

The sources each table comes from are cited in ``docs/collectives.md``.

Examples
--------
>>> parse_rule("nccl:channels=4")
Rule(name='nccl', channels=4)
>>> GLOO["reduce_scatter"], NCCL["broadcast"]
('ring_all_reduce', 'ring')
>>> library_rule("gloo", "cpu"), library_rule("nccl", "cuda")
('gloo', 'nccl')
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.routing import NetworkError

__all__ = [
    "DEFAULT_RULE",
    "GLOO",
    "NCCL",
    "RULES",
    "Rule",
    "check_rule_for_device",
    "library_rule",
    "parse_rule",
]

RULES = ("commsim", "gloo", "nccl")
#: What ``auto`` means when a run names no rule (kept the simulator's own: no number moves).
DEFAULT_RULE = "commsim"

#: gloo's algorithm per collective (``gloo/*.cc`` and ``ProcessGroupGloo.cpp``).
GLOO = {
    "all_reduce": "ring",
    "reduce_scatter": "ring_all_reduce",
    "all_gather": "ring",
    "broadcast": "tree",
    "reduce": "ring_to_root",
    "all_to_all": "direct",
    "barrier": "halving_doubling",
    "gather": "direct",
    "scatter": "direct",
}
#: NCCL's algorithm per collective where it has one choice (all-reduce and the barrier,
#: a one-element all-reduce, go by the cost model).
NCCL = {
    "reduce_scatter": "ring",
    "all_gather": "ring",
    "broadcast": "ring",
    "reduce": "ring",
    "all_to_all": "direct",
    "gather": "direct",
    "scatter": "direct",
}
#: Channels NCCL opens at least: the rings/trees it finds, duplicated (``ncclTopoPreset``).
NCCL_CHANNELS = 2


@dataclass(frozen=True)
class Rule:
    """A rule's name and its options (``channels``: NCCL's, 1 for the others)."""

    name: str = DEFAULT_RULE
    channels: int = 1

    @property
    def spec(self) -> str:
        """The rule as written: ``"gloo"``, ``"nccl:channels=2"``.

        >>> parse_rule("nccl").spec
        'nccl:channels=2'
        """
        return f"nccl:channels={self.channels}" if self.name == "nccl" else self.name


def parse_rule(spec: object) -> Rule:
    """``"commsim"``, ``"gloo"`` or ``"nccl[:channels=N]"`` as a :class:`Rule`; a one-line
    error naming the field otherwise.

    >>> parse_rule("mpich")
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: collectives: rule 'mpich' is unknown; use one of commsim, gloo, nccl (e.g. 'nccl:channels=4'); to fix algorithms it must map collectives to algorithms, e.g. {'all_reduce': 'ring'}
    """
    if not isinstance(spec, str):
        raise NetworkError(
            f"collectives: rule {spec!r} must be a string: one of {', '.join(RULES)}"
        )
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in RULES:
        raise NetworkError(
            f"collectives: rule {name!r} is unknown; use one of {', '.join(RULES)} (e.g. "
            "'nccl:channels=4'); to fix algorithms it must map collectives to algorithms, "
            "e.g. {'all_reduce': 'ring'}"
        )
    options: dict[str, str | None] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        options[key.strip()] = value.strip() if eq else None
    if name != "nccl" and options:
        raise NetworkError(f"collectives: rule {name!r} takes no options, got {spec!r}")
    if set(options) - {"channels"}:
        raise NetworkError(
            f"collectives: rule nccl takes only channels, got {spec!r}; e.g. 'nccl:channels=4'"
        )
    if name != "nccl":
        return Rule(name)
    raw = options.get("channels", str(NCCL_CHANNELS))
    if raw is None or not raw.isdigit() or int(raw) < 1:
        raise NetworkError(
            f"collectives: nccl channels must be a whole number >= 1, got {spec!r}; "
            "e.g. 'nccl:channels=4'"
        )
    return Rule(name, int(raw))


def library_rule(backend: str, device: str = "cpu") -> str:
    """The rule that imitates a real run's backend: ``gloo`` on CPU tensors, ``nccl`` on GPUs.

    ``device`` is the type of the ranks' tensors (``"cpu"`` or ``"cuda"``); a backend that
    cannot move them is refused in one line, as the real run would refuse it.

    >>> library_rule("nccl", "cpu")
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: backend 'nccl' moves GPU tensors only, and this run's are on cpu; use collectives='gloo' (what a CPU run's library runs) or 'commsim'
    """
    if backend not in ("gloo", "nccl"):
        raise NetworkError(f"backend {backend!r} has no rule here; use one of gloo, nccl")
    check_rule_for_device(backend, device, what="backend")
    return backend


def check_rule_for_device(rule: str, device: str, *, what: str = "collectives") -> None:
    """Refuse, in one line, a rule whose library cannot move tensors on ``device``.

    NCCL never runs on CPU tensors (PyTorch's backend table: nccl, CPU: no); gloo runs on
    both, but PyTorch's GPU runs use NCCL, so ``gloo`` on ``cuda`` is allowed.

    >>> check_rule_for_device("nccl:channels=2", "cpu")
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: collectives 'nccl:channels=2' moves GPU tensors only, and this run's are on cpu; use collectives='gloo' (what a CPU run's library runs) or 'commsim'
    """
    kind = str(device).split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise NetworkError(f"device {device!r} is unknown; use cpu or cuda")
    if parse_rule(rule).name == "nccl" and kind == "cpu":
        raise NetworkError(
            f"{what} {rule!r} moves GPU tensors only, and this run's are on cpu; use "
            "collectives='gloo' (what a CPU run's library runs) or 'commsim'"
        )

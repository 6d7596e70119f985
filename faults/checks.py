"""Events checked against the run they are for: its ranks, its links, its ``steps``, and
that someone is left to finish it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from faults.errors import FaultError
from faults.events import Crash, Event, LinkFault, RandomCrashes, Slow
from options.spec import did_you_mean

__all__ = ["Links", "check_event", "last_survivor_lost"]

# A node's links are listed in an error up to this many.
_SHOWN = 8


class Links:
    """A backend's links, undirected, node names as strings; None: a backend without links.

    Examples
    --------
    >>> links = Links([("spine0", "leaf0"), ("spine0", 1)])
    >>> links.check(("leaf0", "spine0"), "link")
    >>> links.check(("spine0", "leaf9"), "link")
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: link: no node 'leaf9'; did you mean 'leaf0'? (spine0 links to 1, leaf0)
    >>> links.check(("leaf0", "1"), "link")
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: link: no link between leaf0 and 1 (leaf0 links to spine0)
    """

    def __init__(self, links: Collection[tuple[object, object]] | None) -> None:
        self.known = links is not None
        self.neighbours: dict[str, set[str]] = {}
        for a, b in links or ():
            self.neighbours.setdefault(str(a), set()).add(str(b))
            self.neighbours.setdefault(str(b), set()).add(str(a))

    def _around(self, node: str) -> str:
        near = sorted(self.neighbours[node])
        more = f", ... ({len(near)} in all)" if len(near) > _SHOWN else ""
        return f"{node} links to {', '.join(near[:_SHOWN])}{more}"

    def check(self, link: tuple[str, str], field: str) -> None:
        """Refuse a link that is not one of these."""
        a, b = link
        for node, other in ((a, b), (b, a)):
            if node not in self.neighbours:
                hint = did_you_mean(node, self.neighbours)
                if not self.neighbours:
                    hint = " (the topology has no links)"
                elif other in self.neighbours:
                    hint += f" ({self._around(other)})"
                elif not hint:
                    nodes = sorted(self.neighbours)
                    more = f", ... ({len(nodes)} in all)" if len(nodes) > _SHOWN else ""
                    hint = f"; nodes: {', '.join(nodes[:_SHOWN])}{more}"
                raise FaultError(field, f"no node {node!r}{hint}")
        if b not in self.neighbours[a]:
            raise FaultError(field, f"no link between {a} and {b} ({self._around(a)})")


def _rank(rank: int, world_size: int, field: str) -> None:
    if not 0 <= rank < world_size:
        raise FaultError(field, f"rank {rank} is not in the run's ranks 0..{world_size - 1}")


def _step(step: int | None, steps: int | None, field: str) -> None:
    if step is not None and steps is not None and step > steps:
        raise FaultError(
            field, f"step {step} is after the run's last step ({steps}); give 0..{steps}"
        )


def check_event(event: Event, world_size: int, links: Links, steps: int | None) -> None:
    """Refuse ``event`` where it names a rank, a link or a step the run does not have;
    errors name the key relative to the event (``"rank"``, ``"link"``)."""
    if isinstance(event, Crash | Slow):
        _rank(event.rank, world_size, "rank")
    if isinstance(event, Crash):
        _step(event.step, steps, "step")
        _step(event.restart_step, steps, "restart_step")
    if isinstance(event, RandomCrashes):
        for i, rank in enumerate(event.ranks or ()):
            _rank(rank, world_size, f"ranks[{i}]")
    if isinstance(event, LinkFault):
        if not links.known:
            raise FaultError(
                "", f"{event.kind} needs a backend with links (sim, or real --testbed)"
            )
        links.check(event.link, "link")


def last_survivor_lost(events: Sequence[Event], world_size: int) -> int | None:
    """The index of the event under which the last rank crashes for good (a crash with no
    restart), so that the run could never finish; None when some rank is left.

    Examples
    --------
    >>> last_survivor_lost([Crash(0, step=1), Crash(1, step=2, restart=1), Crash(1, at=3)], 2)
    2
    >>> last_survivor_lost([RandomCrashes(mtbf=60, ranks=(1,))], 2) is None
    True
    """
    down: set[int] = set()
    for i, event in enumerate(events):
        if isinstance(event, Crash) and not event.restarts:
            down.add(event.rank)
        elif isinstance(event, RandomCrashes) and not event.restarts:
            down.update(range(world_size) if event.ranks is None else event.ranks)
        else:
            continue
        if len(down) >= world_size:
            return i
    return None

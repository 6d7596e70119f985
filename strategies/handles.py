"""The one handle type: what every communicator call returns and a role program yields.

A :class:`Handle` is a small future. A backend *starts* an operation, returns its handle, and
later resolves or fails it from its own machinery (a SimPy callback in ``sim``, a gloo
completion thread in ``real``); ``value = yield handle`` waits for it. A failed handle's error
is thrown into the program at that ``yield``, so ``try/except CommError`` around a yield works
in both backends. Handles compose without knowing the backend: :meth:`Handle.then`,
:func:`all_of` and :func:`any_of` build new handles from finished ones, which is how
``wait_all``, ``wait_any``, timeouts and compression wrappers are written once.

A handle also records when its data started and stopped moving (``started_at``,
``finished_at``) and what it is, for time accounting and for naming what a rank waits on in
a deadlock, a timeout or a trace: its ``kind`` (:data:`Kind`: ``"compute"``, ``"comm"`` or
``"idle"``) and either an :class:`~strategies.operations.Operation` (the communicator's calls: the operation, its
group, peer, root and bytes, as fields) or a plain description (``what``: computing,
sleeping, a strategy's own names). A backend adds its notes as fields too (``seq``,
``held``, ``after``: the simulator's). :meth:`Handle.describe` writes the sentence for an
error message and :attr:`Handle.label` the key a trace names the span by
(:func:`strategies.operations.span_name`); neither is ever parsed back.

Examples
--------
>>> h = Handle("comm", op=Operation("recv", peer=1))
>>> doubled = h.then(lambda v: 2 * v)
>>> h.resolve(21, at=1.0)
>>> doubled.done, doubled.value, doubled.describe(), doubled.peer
(True, 42, 'recv from rank 1', 1)
>>> any_of([Handle(), done("ready")]).value
(1, 'ready')
>>> Handle(op=Operation("reduce", group=(0, 2), root=2), seq=3).describe()
'reduce on group (0, 2) (dst=2) (collective #3 of this group)'
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, Literal, TypeVar, overload

from strategies.operations import Label, Operation, Several

__all__ = ["Handle", "Kind", "all_of", "any_of", "done"]

#: What a handle's time counts as: computing, moving data (or waiting to), or idle (sleeping).
Kind = Literal["compute", "comm", "idle"]

T = TypeVar("T")
U = TypeVar("U")

_PENDING, _OK, _FAILED = 0, 1, 2
# One lock for every handle's state change: a real backend resolves handles from its
# completion threads while the rank's thread adds callbacks. Held for a few attribute
# operations only; a lock per handle would cost an allocation on the simulator's hot path.
_LOCK = threading.Lock()


class Handle(Generic[T]):
    """An operation in progress; resolved or failed exactly once by the backend.

    Callbacks added with :meth:`add_callback` run in the thread that resolves the handle (or
    at once if it is already finished), outside the lock that makes this safe when a real
    backend resolves handles from its completion threads.
    """

    __slots__ = (
        "kind",
        "op",
        "seq",
        "held",
        "after",
        "started_at",
        "finished_at",
        "children",
        "_what",
        "_like",
        "_several",
        "_state",
        "_value",
        "_callbacks",
    )

    def __init__(
        self,
        kind: Kind = "comm",
        what: str = "",
        *,
        op: Operation | None = None,
        seq: int | None = None,
        held: int | None = None,
        after: Handle[Any] | None = None,
    ) -> None:
        self.kind: Kind = kind
        #: The communicator's call this handle is (``None``: computing, sleeping, several).
        self.op = op
        #: The simulator's notes: the collective's number in its group; the group every rank
        #: must create before the call starts; the rank's own work it starts after.
        self.seq = seq
        self.held = held
        self.after = after
        self._what = what
        #: The handle this one is described as (:meth:`then`'s source).
        self._like: Handle[Any] | None = None
        self._several: str | None = None  # "all of" / "any of": described by its children
        self.started_at: float | None = None
        self.finished_at: float | None = None
        #: The handles this one stands for (``all_of``/``any_of``), for time accounting.
        self.children: tuple[Handle[Any], ...] = ()
        self._state = _PENDING
        self._value: Any = None
        self._callbacks: list[Callable[[Handle[T]], object]] | None = []

    # -- reading ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Finished, successfully or not."""
        return self._state != _PENDING

    @property
    def failed(self) -> bool:
        return self._state == _FAILED

    @property
    def value(self) -> T:
        """The result; raises the error of a failed handle, ``RuntimeError`` if unfinished."""
        if self._state == _OK:
            return self._value
        if self._state == _FAILED:
            raise self._value
        raise RuntimeError(f"{self.describe()} has not finished; yield it to wait for it")

    @property
    def error(self) -> BaseException | None:
        return self._value if self._state == _FAILED else None

    def outcome(self) -> tuple[Any, BaseException | None]:
        """``(value, None)`` if it succeeded, ``(None, error)`` if it failed (for drivers,
        which throw the error into the program); only for a finished handle."""
        if self._state == _FAILED:
            return None, self._value
        return self._value, None

    # -- what it is ---------------------------------------------------------------------------
    @property
    def operation(self) -> str | None:
        """The communicator's call (``"all_reduce"``, ``"send"``, ...), if this is one."""
        op = self._op()
        return None if op is None else op.name

    @property
    def group(self) -> tuple[int, ...] | None:
        """A collective's group as the program named it (``None``: the world, or no group)."""
        op = self._op()
        return None if op is None else op.group

    @property
    def peer(self) -> int | None:
        """A send's destination, a receive's source (``None``: any rank, or no peer)."""
        op = self._op()
        return None if op is None else op.peer

    @property
    def root(self) -> int | None:
        """A broadcast's source, a reduce's destination."""
        op = self._op()
        return None if op is None else op.root

    @property
    def nbytes(self) -> int | None:
        """A send's payload in bytes."""
        op = self._op()
        return None if op is None else op.nbytes

    def _op(self) -> Operation | None:
        h: Handle[Any] | None = self
        while h is not None and h.op is None and not h._what:
            h = h._like
        return None if h is None else h.op

    @property
    def what(self) -> str:
        """The plain description given (computing, sleeping), else :meth:`describe`."""
        return self._what or self.describe()

    @property
    def label(self) -> Label:
        """What a trace names this handle's spans by (:func:`span_name`): its operation
        without a backend's notes, several handles' labels, or its plain description."""
        if self._what:
            return self._what
        if self.op is not None:
            return self.op
        if self._several is not None:
            return Several(
                self._several,
                tuple(h.label for h in self.children[:3]),
                max(0, len(self.children) - 3),
            )
        if self._like is not None:
            return self._like.label
        return ""

    def describe(self) -> str:
        """What this operation is, for error messages: built from its fields."""
        if self._what:
            return self._what
        if self.op is not None:
            text = str(self.op)
            if self.seq is not None:
                text = f"{text} (collective #{self.seq} of this group)"
            if self.held is not None:
                text = f"{text} (held until every rank creates group #{self.held})"
            elif self.after is not None:
                text = f"{text} (after the rank's own {self.after.describe()})"
            return text
        if self._several is not None:
            return _list_what(self._several, self.children)
        if self._like is not None:
            return self._like.describe()
        return f"a {self.kind} operation"

    def __repr__(self) -> str:
        state = ("pending", "done", "failed")[self._state]
        return f"<Handle {self.describe()} ({state})>"

    # -- finishing (the backend's side) --------------------------------------------------------
    def resolve(
        self, value: Any = None, *, at: float | None = None, started_at: float | None = None
    ) -> None:
        """Finish successfully at time ``at`` (the backend's clock); run the callbacks."""
        self._finish(_OK, value, at, started_at)

    def fail(self, error: BaseException, *, at: float | None = None) -> None:
        """Finish with ``error``, which the waiting program receives at its ``yield``."""
        self._finish(_FAILED, error, at, None)

    def _finish(self, state: int, value: Any, at: float | None, started_at: float | None) -> None:
        with _LOCK:
            if self._state != _PENDING:
                raise RuntimeError(f"{self.describe()} finished twice")
            self._state, self._value = state, value
            self.finished_at = at
            self.started_at = at if started_at is None else started_at
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback(self)

    def add_callback(self, callback: Callable[[Handle[T]], object]) -> None:
        """Call ``callback(self)`` when finished (now, if it already is); what it returns is
        ignored."""
        with _LOCK:
            if self._callbacks is not None:
                self._callbacks.append(callback)
                return
        callback(self)

    # -- composing ------------------------------------------------------------------------
    def then(
        self, fn: Callable[[T], U], what: str = "", *, like: Handle[Any] | None = None
    ) -> Handle[U]:
        """A handle for ``fn(value)``, computed when this one finishes (errors pass through,
        and an error raised by ``fn`` fails the new handle). ``fn`` runs in the thread that
        finishes the operation (a library thread on ``real``): keep it to pure maths on the
        value (decoding, scaling), and make communicator calls from the program.

        It is described as ``what``, else as ``like`` (its fields, its label), else as this
        handle."""
        out: Handle[U] = Handle(self.kind, what)
        out._like = self if like is None else like
        out.children = (self,)

        def finish(h: Handle[T]) -> None:
            if h.failed:
                out.fail(h._value, at=h.finished_at)
                return
            try:
                result = fn(h._value)
            except BaseException as exc:  # the program sees it at its yield
                out.fail(exc, at=h.finished_at)
                return
            out.resolve(result, at=h.finished_at, started_at=h.started_at)

        self.add_callback(finish)
        return out


@overload
def done(*, what: str = ...) -> Handle[None]: ...
@overload
def done(value: T, *, what: str = ...) -> Handle[T]: ...
def done(value: Any = None, *, what: str = "a finished operation") -> Handle[Any]:
    """A handle that has already finished with ``value`` (local work, groups of one)."""
    h: Handle[Any] = Handle("comm", what)
    h.resolve(value)
    return h


def all_of(handles: Sequence[Handle[Any]], what: str = "") -> Handle[list[Any]]:
    """One handle for several; its value is the list of their values, in the order given.

    The first failure fails it (the other operations go on, as they would in torch).
    """
    handles = list(handles)
    out: Handle[list[Any]] = Handle("comm", what)
    out._several = "all of"
    out.children = tuple(handles)
    if not handles:
        out.resolve([])
        return out
    remaining = [len(handles)]
    lock = threading.Lock()

    def finish(h: Handle[Any]) -> None:
        # Decide under the lock, finish outside it: callbacks may start other operations.
        with lock:
            if remaining[0] <= 0:
                return
            remaining[0] = 0 if h.failed else remaining[0] - 1
            last = remaining[0] == 0
        if h.failed:
            out.fail(h._value, at=h.finished_at)
        elif last:
            starts = [c.started_at for c in handles if c.started_at is not None]
            ends = [c.finished_at for c in handles if c.finished_at is not None]
            out.resolve(
                [c._value for c in handles],
                at=max(ends, default=None),
                started_at=min(starts, default=None),
            )

    for h in handles:
        h.add_callback(finish)
    return out


def any_of(handles: Sequence[Handle[Any]], what: str = "") -> Handle[tuple[int, Any]]:
    """A handle that finishes with the first of ``handles`` to finish: ``(index, value)``.

    The others go on and can be yielded later. If the first to finish failed, so does this.
    """
    handles = list(handles)
    if not handles:
        raise ValueError("any_of needs at least one handle; there is nothing to wait for")
    out: Handle[tuple[int, Any]] = Handle("comm", what)
    out._several = "any of"
    out.children = tuple(handles)
    # The losers keep their callbacks until they finish (a timeout's timer: maybe an hour);
    # the cell is emptied once one wins, so those callbacks do not keep the result alive.
    cell: list[Handle[tuple[int, Any]] | None] = [out]
    lock = threading.Lock()

    def first(index: int) -> Callable[[Handle[Any]], None]:
        def finish(h: Handle[Any]) -> None:
            with lock:
                winner, cell[0] = cell[0], None
            if winner is None:
                return
            if h.failed:
                winner.fail(h._value, at=h.finished_at)
            else:
                winner.resolve((index, h._value), at=h.finished_at, started_at=h.started_at)

        return finish

    for i, h in enumerate(handles):
        h.add_callback(first(i))
    return out


def _list_what(prefix: str, handles: Sequence[Handle[Any]]) -> str:
    shown = [h.describe() for h in handles[:3]]
    more = f" and {len(handles) - 3} more" if len(handles) > 3 else ""
    return f"{prefix} [{'; '.join(shown)}{more}]"

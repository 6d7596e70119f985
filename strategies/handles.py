"""What a communicator call returns: a handle the role program yields to wait for the result.

Every communicator call *starts* an operation and returns a handle; ``value = yield handle``
waits for it. That one rule makes blocking and non-blocking use the same code: start several
operations, do other work, then yield the handles. Backends implement handles their own way
(the simulator uses SimPy events; the real backend wraps ``torch.distributed`` work objects),
so this module only fixes the real backend's small protocol and a finished-handle helper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Waitable", "Done", "Pending"]

T = TypeVar("T")


class Waitable(Protocol[T]):
    """A handle a real-backend trampoline can wait on."""

    def wait(self) -> T:
        """Block until the operation finishes and return its value."""
        ...


class Done(Generic[T]):
    """A handle whose value is already known (local work, finished operations).

    Examples
    --------
    >>> Done(3).wait()
    3
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def wait(self) -> T:
        return self.value


class Pending(Generic[T]):
    """A handle over one or more ``torch.distributed`` work objects.

    Parameters
    ----------
    works
        Objects with a ``wait()`` method (``torch.distributed.Work``), waited in order.
    finish
        Called after all waits; its return value is the handle's value. It is where
        post-processing (dividing a sum for a mean, reading the sender rank) happens.

    Examples
    --------
    >>> Pending([Done(None)], lambda: "ok").wait()
    'ok'
    """

    __slots__ = ("_works", "_finish", "_value", "_waited")

    def __init__(self, works: list[Any], finish: Callable[[], T]) -> None:
        self._works = works
        self._finish = finish
        self._waited = False
        self._value: T | None = None

    def wait(self) -> T:
        if not self._waited:
            for work in self._works:
                work.wait()
            self._value = self._finish()
            self._waited = True
        return self._value  # type: ignore[return-value]

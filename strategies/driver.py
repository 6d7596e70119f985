"""The one program driver: how a role program is advanced, whatever the backend.

A role program is a generator that yields :class:`~strategies.handles.Handle` objects and
receives their values. :class:`ProgramDriver` holds the rules every backend follows to run
one, written once: a program is advanced with a handle's outcome (its value, or its error
thrown in at the ``yield``); the next thing it yields must be a handle, or the driver closes
the program and raises the one not-yieldable error (:func:`~strategies.base.not_yieldable`);
and once the run has stopped, a program is not resumed but closed at its current ``yield``
(:func:`~strategies.base.close_program`: its ``finally`` blocks run). A backend only decides
how to wait between two advances: ``sim`` yields a SimPy event, ``real`` blocks its thread.

Examples
--------
>>> from strategies.handles import done
>>> def program():
...     value = yield done(20)
...     yield done(value + 1)
>>> driver = ProgramDriver(program(), rank=0, role="worker", stopped=lambda: False)
>>> first = driver.advance()
>>> second = driver.resume(first)
>>> second.value, driver.resume(second)
(21, 'finished')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from strategies.base import Program, close_program, not_yieldable
from strategies.handles import Handle

__all__ = ["Ended", "ProgramDriver"]

#: Why a program is no longer driven: it returned, or the run stopped at its ``yield``.
Ended = Literal["finished", "stopped"]


class ProgramDriver:
    """Advances one role program, one ``yield`` at a time.

    Parameters
    ----------
    program
        The role program (a generator of handles).
    rank, role
        Whose program it is (named in errors).
    stopped
        Whether the run has stopped, as this rank knows it now; read before every resume.

    Attributes
    ----------
    ended
        ``"finished"`` or ``"stopped"`` once the program is no longer driven, else None.
    """

    def __init__(self, program: Program, rank: int, role: str, stopped: Callable[[], bool]) -> None:
        self.program = program
        self.rank = rank
        self.role = role
        self._stopped = stopped
        self.ended: Ended | None = None

    def advance(self, value: Any = None, error: BaseException | None = None) -> Handle[Any] | Ended:
        """Resume the program with ``value`` (or throw ``error`` into it at its ``yield``);
        return the handle it yields next, or why it is no longer driven.

        A run that has stopped is not resumed: the program is closed at its ``yield``, and
        this returns ``"stopped"``. An error the program does not catch propagates. Anything
        yielded that is not a handle closes the program and raises ``TypeError`` naming the
        line that yielded it.
        """
        if self.ended is not None:
            return self.ended
        if self._stopped():  # the program learns the stop at its yield; finally blocks run
            self.ended = "stopped"
            close_program(self.program, self.rank, self.role)
            return "stopped"
        program = self.program
        try:
            item = program.send(value) if error is None else program.throw(error)
        except StopIteration:
            self.ended = "finished"
            return "finished"
        except BaseException:
            self.ended = "finished"  # it raised: a generator that raised is finished too
            raise
        if isinstance(item, Handle):
            return item
        self.ended = "finished"
        refused = not_yieldable(item, self.rank, self.role, program)
        try:  # its finally blocks run, as at a stop; the error is the yield, not the close
            program.close()
        except RuntimeError:
            pass
        raise refused

    def resume(self, handle: Handle[Any]) -> Handle[Any] | Ended:
        """:meth:`advance` with a finished ``handle``'s outcome (its value or its error)."""
        value, error = handle.outcome()
        return self.advance(value, error)

    def close(self) -> None:
        """Close the program at its ``yield`` (the run stopped while it waited)."""
        if self.ended is None:
            self.ended = "stopped"
        close_program(self.program, self.rank, self.role)

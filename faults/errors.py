"""The one error a fault schedule raises: a line that starts with the field it is about."""

from __future__ import annotations

__all__ = ["FaultError"]


class FaultError(ValueError):
    """A bad fault schedule: one line, ``"<field>: <what is wrong and the fix>"``.

    ``field`` is the path of the bad value (``"faults[2].until"``), so a caller can say where it
    was set without reading the message; ``reason`` is the message without it.

    Examples
    --------
    >>> error = FaultError("until", "must be after at (1.0 s)")
    >>> str(error), error.field
    ('until: must be after at (1.0 s)', 'until')
    >>> str(error.under("faults[2]"))
    'faults[2].until: must be after at (1.0 s)'
    >>> FaultError("", "give step or at").under("faults[0]").field
    'faults[0]'
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason

    def under(self, prefix: str) -> FaultError:
        """The same error about the value at ``prefix`` + this one's field."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return FaultError(field, self.reason)

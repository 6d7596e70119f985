"""The run's store as its ranks use it: every value signed with the run's secret.

torch's ``TCPStore`` has no authentication: whoever reaches its port can read, write and list
keys. The run therefore trusts a value only when it carries a tag (HMAC-SHA256 over the key
and the value) made with the run's secret, which only the run's own processes know: the
local launcher writes it into its set-up directory (mode 0700, the launcher's own) and hands
it to the ranks it starts; on a cluster every rank reads ``COMMSIM_RUN_SECRET`` from its
environment. A value whose tag does not verify is refused with :class:`StoreTampered`, so a
process that is not a rank of this run can neither forge a result, a failure or a stop, nor
move a value from one key to another.

Counters (``add``) cannot carry a tag. They only pace the run (heartbeats, how many owners
reached ``steps``, how many ranks left); a forged counter can stall or stop a run early, but
never run code or change a measured row. Nothing read from the store is ever unpickled:
results travel as tensors and plain data (see :mod:`real.handin`).

Examples
--------
>>> import torch.distributed as dist
>>> from datetime import timedelta
>>> raw = dist.HashStore()
>>> store = SignedStore(raw, "s3cret")
>>> store.set("stop", "steps")
>>> bytes(store.get("stop"))
b'steps'
>>> raw.set("stop", "forged")
>>> store.get("stop")
Traceback (most recent call last):
...
real.store.StoreTampered: the value of 'stop' on the run's store was not written by a rank of this run (its signature does not verify); another process reached the store's port: results of this run cannot be trusted
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from real.placement import LaunchError

__all__ = [
    "SECRET_ENV",
    "SECRET_FILE",
    "SignedStore",
    "StoreTampered",
    "new_secret",
    "read_secret",
    "write_secret",
]

#: Where a rank started by a cluster launcher finds the run's secret.
SECRET_ENV = "COMMSIM_RUN_SECRET"
#: The secret's file in the local launcher's set-up directory.
SECRET_FILE = "secret"
_TAG = hashlib.sha256().digest_size


class StoreTampered(LaunchError):
    """A value on the run's store was not written by a rank of this run."""


def new_secret() -> str:
    """A fresh per-run secret (256 random bits, as hex).

    >>> len(new_secret()), new_secret() != new_secret()
    (64, True)
    """
    return secrets.token_hex(32)


def write_secret(directory: str | Path, secret: str) -> None:
    """Put ``secret`` in ``directory`` (the launcher's own, mode 0700) readable by its owner
    alone."""
    path = Path(directory) / SECRET_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)


def read_secret(directory: str | Path | None = None) -> str | None:
    """The run's secret: the set-up directory's file when there is one, else
    ``COMMSIM_RUN_SECRET`` (``None`` when neither is set: the store is then unauthenticated)."""
    if directory is not None and (Path(directory) / SECRET_FILE).exists():
        return (Path(directory) / SECRET_FILE).read_text().strip()
    return os.environ.get(SECRET_ENV) or None


class SignedStore:
    """A store client whose values carry the run's signature (see the module docstring).

    ``secret=None`` signs nothing and trusts every value (a cluster run without
    ``COMMSIM_RUN_SECRET``); values are still never executed.
    """

    def __init__(self, store: Any, secret: str | None) -> None:
        #: The unsigned client under the run's namespace (for the process group's own keys).
        self.raw = store
        self._key = None if secret is None else secret.encode()

    @property
    def signed(self) -> bool:
        return self._key is not None

    def _tag(self, key: str, value: bytes) -> bytes:
        assert self._key is not None
        return hmac.new(self._key, key.encode() + b"\0" + value, hashlib.sha256).digest()

    def _seal(self, key: str, value: str | bytes) -> bytes:
        data = value.encode() if isinstance(value, str) else bytes(value)
        return data if self._key is None else self._tag(key, data) + data

    def _open(self, key: str, sealed: bytes) -> bytes:
        if self._key is None:
            return sealed
        tag, data = sealed[:_TAG], sealed[_TAG:]
        if len(sealed) < _TAG or not hmac.compare_digest(tag, self._tag(key, data)):
            raise StoreTampered(
                f"the value of {key!r} on the run's store was not written by a rank of this "
                "run (its signature does not verify); another process reached the store's "
                "port: results of this run cannot be trusted"
            )
        return data

    def set(self, key: str, value: str | bytes) -> None:
        self.raw.set(key, self._seal(key, value))

    def get(self, key: str) -> bytes:
        return self._open(key, bytes(self.raw.get(key)))

    def compare_set(self, key: str, expected: str, desired: str | bytes) -> bytes:
        """Set ``key`` to ``desired`` if it holds ``expected`` (``""``: if it is absent);
        the value it holds afterwards."""
        sealed = self._seal(key, desired)
        return self._open(key, bytes(self.raw.compare_set(key, expected, sealed)))

    def check(self, keys: list[str]) -> bool:
        return bool(self.raw.check(keys))

    def wait(self, keys: list[str], timeout: timedelta) -> None:
        self.raw.wait(keys, timeout)

    def add(self, key: str, amount: int) -> int:
        return int(self.raw.add(key, amount))

    def multi_get(self, keys: list[str]) -> list[bytes]:
        """Counters' values (``add`` keeps them unsigned), in one round trip; for any other
        key use :meth:`get`."""
        return [bytes(value) for value in self.raw.multi_get(keys)]

"""Where a schedule comes from: nothing, a list of events, a dict with options, or a TOML or
JSON file holding either; read to its raw events and options, not yet checked.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faults.errors import FaultError
from options.spec import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["OPTIONS", "read_source"]

#: The keys beside ``events`` in a schedule's dict or file.
OPTIONS = ("detect", "reroute", "recovery", "checkpoint_every", "checkpoint")

_HELD = 'a list of events or a dict {"events": [...], "detect": "3s", "reroute": "0.5s"}'
_FORMS = f"{_HELD}, or a .toml or .json file holding either"


def read_source(value: object) -> tuple[list[Any], dict[str, Any]]:
    """``value``'s raw events and options (``detect``, ``reroute``, where given).

    Examples
    --------
    >>> read_source(None)
    ([], {})
    >>> read_source({"events": [{"kind": "slow"}], "detect": "1s"})
    ([{'kind': 'slow'}], {'detect': '1s'})
    >>> read_source({"evnts": []})
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: faults.evnts: unknown key (keys: events, detect, reroute, recovery, checkpoint_every, checkpoint); did you mean 'events'?
    """
    if value is None:
        return [], {}
    if isinstance(value, str | os.PathLike):
        data = _read_file(Path(value))
        if not isinstance(data, list | Mapping):
            raise FaultError("faults", f"{str(value)!r} holds {data!r}; give {_HELD}")
        return read_source(data)
    if isinstance(value, list | tuple):
        return list(value), {}
    if isinstance(value, Mapping):
        if "kind" in value:
            raise FaultError("faults", "is one event; give a list of events: [{...}]")
        keys = ("events", *OPTIONS)
        for key in value:
            if key not in keys:
                raise FaultError(
                    f"faults.{key}",
                    f"unknown key (keys: {', '.join(keys)}){did_you_mean(str(key), keys)}",
                )
        events = value.get("events", [])
        if not isinstance(events, list | tuple):
            raise FaultError("faults.events", f"must be a list of events, not {events!r}")
        return list(events), {k: value[k] for k in OPTIONS if k in value}
    raise FaultError("faults", f"give {_FORMS}; not {type(value).__name__}")


def _read_file(path: Path) -> object:
    if path.suffix not in (".toml", ".json"):
        raise FaultError("faults", f"{str(path)!r} is not a .toml or .json file; give {_FORMS}")
    if not path.is_file():
        raise FaultError("faults", f"no such file {str(path)!r}; give {_FORMS}")
    try:
        text = path.read_text()
        if path.suffix == ".json":
            return json.loads(text)
        return tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = path.suffix[1:].upper()
        raise FaultError("faults", f"{str(path)!r} is not valid {kind}: {exc}") from None
    except UnicodeDecodeError:
        raise FaultError("faults", f"{str(path)!r} is not a text file; give {_FORMS}") from None

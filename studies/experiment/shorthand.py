"""What a person writes, into the sections' plain data: the shorthands of an experiment file
(``topology = "star:n=4"``, ``strategy = "local_sgd:period=8"``: the one spec grammar,
:mod:`options.spec`), file paths made absolute, and ``--set section.field=value`` overrides.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from studies.experiment.schema import ExperimentError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["normalise", "parse_override", "set_path"]


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"strategy.mode=async"`` into a dotted path and a value.

    Examples
    --------
    >>> parse_override("strategy.staleness=2"), parse_override("strategy.mode=async")
    (('strategy.staleness', 2), ('strategy.mode', 'async'))
    >>> parse_override("sweep.seeds=[0, 1]"), parse_override("run.max_time=1e-3")
    (('sweep.seeds', [0, 1]), ('run.max_time', 0.001))
    >>> parse_override("strategy")
    Traceback (most recent call last):
    ...
    studies.experiment.ExperimentError: --set 'strategy': write section.field=value, e.g. strategy.mode=async
    """
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key or "." not in key and key not in ("topology", "strategy", "workload"):
        raise ExperimentError(
            f"--set {text!r}: write section.field=value, e.g. strategy.mode=async"
        )
    return key, _literal(raw.strip())


def _literal(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: async, 1Gbps, cosine


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the field at dotted path ``key`` to ``value``; a part may index a list of tables
    (``faults.events[0].mtbf``: the first event's ``mtbf``), which must hold that entry.

    Examples
    --------
    >>> data = {"faults": {"events": [{"kind": "crash", "mtbf": "60s"}]}}
    >>> set_path(data, "faults.events[0].mtbf", "30s"); data["faults"]["events"][0]["mtbf"]
    '30s'
    >>> set_path(data, "faults.events[2].mtbf", "30s")
    Traceback (most recent call last):
    ...
    studies.experiment.ExperimentError: faults.events[2].mtbf: faults.events has 1 entries (0..0); index one of them or add [[faults.events]] tables

    A part in double quotes is one key, dots and brackets included, as TOML writes a sweep's
    field: ``sweep.grid."faults.events[0].mtbf"``.

    >>> sweep = {"sweep": {"grid": {}}}
    >>> set_path(sweep, 'sweep.grid."faults.events[0].mtbf"', ["1s", "2s"]); sweep
    {'sweep': {'grid': {'faults.events[0].mtbf': ['1s', '2s']}}}
    """
    *parents, last = _parts(key)
    node: Any = data
    for i, part in enumerate(parents):
        name, index = _indexed(key, part)
        child = node.setdefault(name, [] if index is not None else {})
        where = ".".join([*parents[:i], name])
        if index is not None:
            if not isinstance(child, list):
                raise ExperimentError(f"{key}: {where} is {child!r}, not a list of tables")
            if not -len(child) <= index < len(child):
                raise ExperimentError(
                    f"{key}: {where} has {len(child)} entries (0..{len(child) - 1}); index one "
                    f"of them or add [[{where}]] tables"
                )
            child = child[index]
            where = f"{where}[{index}]"
        if not isinstance(child, dict):
            raise ExperimentError(f"{key}: {where} is {child!r}, not a section with fields")
        node = child
    name, index = _indexed(key, last)
    if index is not None:
        raise ExperimentError(f"{key}: set a field of the entry (e.g. {last}.mtbf), not all of it")
    node[name] = value


def _parts(key: str) -> list[str]:
    """``key``'s parts between dots; a part in double quotes is kept whole, quotes included
    (so that :func:`_indexed` takes it as one literal key)."""
    parts = _PART.findall(key)
    if ".".join(parts) != key:
        raise ExperimentError(
            f"{key}: not a dotted path; write section.field, or quote a key with dots in it "
            '(sweep.grid."topology.bandwidth")'
        )
    return parts


_PART = re.compile(r'"[^"]*"|[^."]+')


def _indexed(key: str, part: str) -> tuple[str, int | None]:
    """``"events[0]"`` -> ``("events", 0)``; ``"steps"`` -> ``("steps", None)``; a quoted
    part is its text, as it is."""
    if len(part) >= 2 and part[0] == part[-1] == '"':
        return part[1:-1], None
    match = _INDEXED.fullmatch(part)
    if match is None:
        if "[" in part or "]" in part:
            raise ExperimentError(f"{key}: {part!r} is not a field or field[index]")
        return part, None
    return match.group(1), int(match.group(2))


_INDEXED = re.compile(r"([^\[\]]+)\[(-?\d+)\]")


def normalise(data: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Shorthands into sections: ``topology = "star:n=4"`` and ``strategy = "allreduce"``;
    relative file paths become relative to the experiment file, so a sweep can run anywhere."""
    if not isinstance(data, dict):
        raise ExperimentError(f"an experiment is a table of sections, not {type(data).__name__}")
    topology = data.get("topology")
    if isinstance(topology, str | os.PathLike):
        text = os.fspath(topology)
        looks_like_file = Path(text).suffix.lower() in (".json", ".graphml", ".gml")
        data["topology"] = {"file": text} if looks_like_file else _spec_dict("topology", text)
    for section in ("strategy", "workload", "optimizer"):
        if isinstance(data.get(section), str):  # "local_sgd", or "local_sgd:period=8"
            data[section] = _spec_dict(section, data[section])
    if base_dir is not None:
        topo = data.get("topology")
        if isinstance(topo, dict) and isinstance(topo.get("file"), str):
            topo["file"] = _relative_to(base_dir, topo["file"])
        compute = data.get("compute")
        if isinstance(compute, dict) and isinstance(compute.get("path"), str):
            compute["path"] = _relative_to(base_dir, compute["path"])
    return data


def _spec_dict(section: str, text: str) -> dict[str, Any]:
    """A section written as a spec string (``"local_sgd:period=8"``, ``"star:n=4"``), read
    with the one grammar of spec strings; a topology's name is its ``kind``."""
    from options.spec import SpecError, parse_spec

    example = "star:n=4,bandwidth=1Gbps" if section == "topology" else "local_sgd:period=8"
    try:
        name, options = parse_spec(text, section, example)
    except SpecError as exc:
        raise ExperimentError(str(exc)) from None
    return {"kind" if section == "topology" else "name": name, **options}


def _relative_to(base_dir: Path, path: str) -> str:
    # Absolute: a worker in another directory (a Dask cluster's) finds the same file.
    return path if os.path.isabs(path) else os.path.normpath(base_dir.resolve() / path)

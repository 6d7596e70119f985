"""How a person writes options, in one place for every package: the ``name:key=value``
grammar of the command line, topology specs and experiment files (:mod:`options.spec`), and
options declared once as typed fields (:mod:`options.declare`), from which a constructor's
validation, defaults, ``repr``, the experiment schema and the docs' tables all come.

This package sits below all the others (it needs pydantic only), so that topologies,
strategies, workloads and the simulator read one grammar and say errors one way.
"""

from __future__ import annotations

from options.spec import SpecError, did_you_mean, parse_spec, spec_value

__all__ = ["SpecError", "did_you_mean", "parse_spec", "spec_value"]

"""``"name:key=value,..."`` strings for strategies, optimizers and schedules: the one grammar
of :mod:`options.spec` (which topologies and experiment files read too), under the name
``sim.run``, ``real.run`` and ``commsim`` have always imported it by.

A strategy's options are checked by its own declaration (:mod:`options.declare`), which
names the closest valid option for a misspelt one.
"""

from __future__ import annotations

from options.spec import did_you_mean, parse_spec, spec_value

__all__ = ["did_you_mean", "parse_spec", "spec_value"]

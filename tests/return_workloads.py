"""A workload evaluated by a return (higher is better), as a reinforcement-learning one is,
for the tests of every layer that reads a run's metric (targets, summaries, plots).

``return_quadratic`` is the ``quadratic`` least-squares problem whose evaluation is
``{"return": -loss, "episode_length": ...}``: no ``loss`` key, ``metric = "return"``,
``maximize = True``. Its return rises as training goes, so a ``target_return`` is reached
exactly where ``target_loss = -target_return`` is on ``quadratic``: an independent check.
Importing this module registers it (``workloads.get("return_quadratic")``, ``--import
tests.return_workloads`` on the command line); real ranks import it by name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

import workloads
from workloads.quadratic import Quadratic, quadratic

__all__ = ["ReturnQuadratic", "return_quadratic"]


class ReturnQuadratic(Quadratic):
    """``quadratic`` reporting ``return = -loss``: higher is better."""

    metric: ClassVar[str] = "return"
    maximize: ClassVar[bool] = True

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        loss = super().evaluate(model)["loss"]
        return {"return": -loss, "episode_length": 10.0}


def return_quadratic(**options: Any) -> ReturnQuadratic:
    """``quadratic(**options)`` evaluated by its return."""
    problem = quadratic(**options)
    problem.__class__ = ReturnQuadratic  # same data and optimum; only the evaluation differs
    return problem  # type: ignore[return-value]


if "return_quadratic" not in workloads.names():
    workloads.register("return_quadratic", return_quadratic)

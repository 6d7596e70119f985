"""The probe under a strategy name, for ranks started from a command line.

``commsim calibrate --testbed`` runs ``python -m real --testbed ... --import
studies.calibration.named --strategy calibration_probe:...``. The probe is not registered
anywhere else: it measures, it does not train, so it stays out of the strategy catalogue.
"""

from __future__ import annotations

from strategies.registry import register
from studies.calibration.probe import CalibrationProbe

__all__ = ["CalibrationProbe"]

register(CalibrationProbe)

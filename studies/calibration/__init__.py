"""``commsim calibrate``: measure a real system, fit the simulator's parameters to it.

``probe`` (the measurements, written as a strategy so they run on either backend), ``fit``
(pure fits of its rows), ``calibrate`` (run, fit, write the calibration directory).
"""

from __future__ import annotations

from studies.calibration.calibrate import Calibration, calibrate, fit_probe, refit, write
from studies.calibration.probe import CalibrationProbe

__all__ = ["Calibration", "CalibrationProbe", "calibrate", "fit_probe", "refit", "write"]

"""Experiments: config files, results store, sweeps, plots and the ``commsim`` CLI."""

__all__: list[str] = []

"""Run directories to load and plot: a small, realistic study written once per session.

``runs_root`` holds (mlp_digits, 40 steps, evaluations every 4, target loss 2.1):

* ``sim/<strategy>/bw=<bandwidth>/seed=<seed>``: all-reduce, parameter server (async and SSP,
  four workers and one server) and Local SGD on a four-worker star of 100 Mbps and 1 Gbps
  links, seeds 0 and 1 (16 runs);
* ``scaling/<strategy>/n=2/seed=<seed>``: all-reduce and Local SGD on a two-worker 1 Gbps
  star (with the four-worker runs above: a speed-up from 2 to 4 workers);
* ``short/local_sgd``: a run stopped after 8 steps, which cannot reach the target;
* ``real/allreduce``: all-reduce on two real gloo processes.

Simulated runs also have ``topology.json`` and ``links.parquet``, as the simulator writes them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

STEPS, EVAL_EVERY, TARGET = 40, 4, 2.1
STRATEGIES = {
    "allreduce": ("allreduce", {}, 0),
    "ps_async": ("parameter_server", {"mode": "async"}, 1),
    "ps_ssp": ("parameter_server", {"mode": "ssp", "staleness": 1}, 1),
    "local_sgd": ("local_sgd", {"period": 4}, 0),
}
BANDWIDTHS = ("100Mbps", "1Gbps")
SEEDS = (0, 1)


def _strategy(name: str, options: dict):
    from strategies import registry

    return registry.strategy_class(name)(**options)


def _sim(out: Path, key: str, bandwidth: str, seed: int, workers: int = 4, steps: int = STEPS):
    import sim

    name, options, servers = STRATEGIES[key]
    sim.run(
        _strategy(name, options),
        "mlp_digits",
        f"star:n={workers + servers},bandwidth={bandwidth}",
        steps=steps,
        eval_every=EVAL_EVERY,
        target_loss=TARGET,
        seed=seed,
        out=out,
    )


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    """The study's root directory (see the module docstring); about ten seconds to write."""
    import real

    root = tmp_path_factory.mktemp("study")
    for key in STRATEGIES:
        for bandwidth in BANDWIDTHS:
            for seed in SEEDS:
                _sim(root / "sim" / key / f"bw={bandwidth}" / f"seed={seed}", key, bandwidth, seed)
    for key in ("allreduce", "local_sgd"):
        for seed in SEEDS:
            _sim(root / "scaling" / key / "n=2" / f"seed={seed}", key, "1Gbps", seed, workers=2)
    _sim(root / "short" / "local_sgd", "local_sgd", "1Gbps", 0, steps=8)
    real.run(
        "allreduce",
        "mlp_digits",
        nproc=2,
        steps=STEPS,
        eval_every=EVAL_EVERY,
        out=root / "real" / "allreduce",
    )
    return root


@pytest.fixture(scope="session")
def study(runs_root) -> pd.DataFrame:
    """Every run of ``runs_root``, loaded."""
    from studies.load import load

    return load(runs_root)


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures drawn through pyplot live until closed: close each test's, or hundreds pile up."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")

"""A fault schedule under torchrun (real.elastic): what its restarts cannot do is refused in one
line naming the fix, before any rank joins the run. The restart itself, under a real torchrun,
is tests/real/test_launchers.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

import strategies
import workloads
from faults import FaultError
from real.cluster import run_launched
from real.placement import LaunchError, Placement
from strategies.roles import TrainingSetup

CRASH = {"kind": "crash", "rank": 1, "step": 5}
RESTART = {"events": [CRASH], "recovery": "restart", "checkpoint_every": 3}
TORCHRUN = Placement(0, 2, 0, 2, 0, "127.0.0.1", 1, True, "torchrun")
ENV = {"TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "1"}


def _refusal(
    faults, placement=TORCHRUN, env=ENV, out="run", strategy="allreduce", monkeypatch=None
) -> str:  # type: ignore[no-untyped-def]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    setup = TrainingSetup.create(strategies.get(strategy), workloads.get("quadratic"), 2, steps=8)
    with pytest.raises((LaunchError, FaultError)) as raised:
        run_launched(setup, placement, faults=faults, out=None if out is None else Path(out))
    said = str(raised.value)
    assert "\n" not in said
    return said


@pytest.mark.parametrize(
    ("faults", "words"),
    [
        ({"events": [CRASH]}, 'set recovery = "restart" with checkpoint_every'),
        ({**RESTART, "events": [{"kind": "crash", "rank": 1, "at": 0.5}]}, "give it a step"),
        (
            {**RESTART, "events": [CRASH, {"kind": "slow", "rank": 0, "factor": 2, "at": 0.1}]},
            "faults[1]: under torchrun only crashes at a step run",
        ),
        (
            {**RESTART, "events": [{"kind": "link_down", "link": ["s0", "1"], "at": 1.0}]},
            "needs a backend with links",
        ),
        (
            {**RESTART, "events": [CRASH, {**CRASH, "step": 7}]},
            "--max-restarts=1 is fewer than the schedule's 2 crashes (each restarts every worker); give --max-restarts=2",
        ),
    ],
)
def test_what_torchruns_restarts_cannot_run_is_refused_in_one_line(
    faults, words, monkeypatch
) -> None:
    assert words in _refusal(faults, monkeypatch=monkeypatch)


def test_a_store_in_rank_0_srun_a_missing_out_and_a_quorum_strategy_are_refused(
    monkeypatch,
) -> None:
    ranks_store = Placement(0, 2, 0, 2, 0, "127.0.0.1", 1, False, "torchrun")
    said = _refusal(RESTART, placement=ranks_store, monkeypatch=monkeypatch)
    assert "unset TORCH_DISABLE_SHARE_RDZV_TCP_STORE" in said
    slurm = Placement(0, 2, 0, 2, 0, "127.0.0.1", 1, False, "slurm")
    assert "under slurm: nothing restarts its ranks" in _refusal(
        RESTART, placement=slurm, monkeypatch=monkeypatch
    )
    assert "needs --out" in _refusal(RESTART, out=None, monkeypatch=monkeypatch)
    quorum = "allreduce:fault_tolerance=quorum"
    said = _refusal(RESTART, strategy=quorum, monkeypatch=monkeypatch)
    assert "recovers by itself (choose one policy)" in said

"""A fault schedule under torchrun (real.elastic): what its restarts cannot do is refused in one
line naming the fix, before any rank joins the run. The restart itself, under a real torchrun,
is tests/real/test_launchers.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

import strategies
import workloads
from faults import FaultError, FaultSchedule
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


def test_a_restart_loads_the_last_complete_checkpoint_and_the_replay_gets_the_launchers_events(
    tmp_path,
) -> None:
    """Generation 1 after rank 1's crash at t=0.5 (checkpoints of steps 3, complete, and 6,
    rank 0's only): both ranks load step 3, rank 1 is back, and the gatherer's events are
    those the local launcher records; a generation after any other failure is refused."""
    import torch

    from real import checkpoints, elastic, rendezvous
    from real.crashes import down, mark_crashed
    from real.store import SignedStore
    from strategies.events import Crashed, Restarted
    from strategies.snapshots import RankState

    host = rendezvous.host_store(0, 2, 10.0)
    store = SignedStore(rendezvous.namespace(host), None)
    store.set("start", repr(0.0))
    directory = tmp_path / "restart"
    for rank, step in ((0, 3), (1, 3), (0, 6)):
        flat = torch.full((2,), float(10 * rank + step))
        checkpoints.write(directory, rank, RankState(flat, {}, step, step, step))
    schedule = FaultSchedule.parse(RESTART, world_size=2, links=None, steps=8)
    with pytest.raises(LaunchError, match="not the schedule's crash"):
        elastic.begin(store, schedule, TORCHRUN, 1, directory, [0, 1])
    mark_crashed(store, 1, 0, 0.5)
    assert down(store, [0, 1]) == (1,)
    rank1 = Placement(1, 2, 1, 2, 0, "127.0.0.1", 1, True, "torchrun")
    steps = [elastic.begin(store, schedule, p, 1, directory, [0, 1]) for p in (TORCHRUN, rank1)]
    assert steps == [3, 3] and down(store, [0, 1]) == ()
    crashed, restarted, rewound = elastic.restart_events(store, 2, 1, directory)
    assert crashed == Crashed(0.5, 1) and restarted.rank == 1 and restarted.at >= 0.5
    assert isinstance(restarted, Restarted) and (rewound.step, rewound.rank) == (3, 1)
    assert rewound.flats is not None and rewound.flats[1].tolist() == [13.0, 13.0]
    elastic.remove_checkpoints(directory)
    assert not directory.exists()

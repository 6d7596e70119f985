"""A simulated run's memory: world-sized structures shared by its ranks, sizes that do not fit
refused, and running out of memory reported as that."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import topologies
from sim.memory import out_of_memory
from sim.run import run
from strategies import AllReduceSGD


def test_every_rank_of_a_run_shares_the_world_sized_structures():
    seen = {}

    class Shares(AllReduceSGD):
        name = "shares_test_only"

        def worker(self, w):
            seen[w.rank] = (w, w.comm.new_group(w.workers))
            yield from super().worker(w)

    run(Shares(), "quadratic", topologies.hierarchical(2, 3), steps=1)
    contexts = [seen[r][0] for r in range(6)]
    first, group = contexts[0], seen[0][1]
    for w, made in (seen[r] for r in range(1, 6)):
        assert w.workers is first.workers
        assert w.servers is first.servers
        assert w.nodes is first.nodes
        assert w.host_graph is first.host_graph
        assert w.comm.world is first.comm.world
        assert made is group
    # The values each rank reads are its own, as before.
    assert [w.local_rank for w in contexts] == [0, 1, 2, 0, 1, 2]
    assert [w.index for w in contexts] == [0, 1, 2, 3, 4, 5]
    assert [w.node for w in contexts] == [0, 0, 0, 1, 1, 1]
    assert first.host_graph[0] == (1, 2, 3, 4, 5)  # every GPU, through switches only


class RunsOutOfMemory(AllReduceSGD):
    """All-reduce that runs out of memory at its third step (after rows were written)."""

    name = "runs_out_test_only"

    def worker(self, w):
        for _ in range(2):
            grads = yield w.compute_gradients()
            grads = yield w.comm.all_reduce(grads, op="mean")
            w.apply(grads)
        raise MemoryError()


def _record(directory):
    return json.loads((directory / "run.json").read_text())


def test_running_out_of_memory_is_reported_as_that_and_keeps_the_run_directory(tmp_path):
    with pytest.raises(MemoryError) as caught:
        run(RunsOutOfMemory(), "quadratic", topologies.star(2), steps=5, eval_every=1, out=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the simulation ran out of memory with 2 ranks (MemoryError)")
    assert "2 replicas of a 10-parameter model" in message  # quadratic: dim 10, no bias
    assert str(tmp_path) in message
    record = _record(tmp_path)
    assert record["status"] == "failed"
    assert record["error"] == f"MemoryError: {message}"
    rows = pd.read_parquet(tmp_path / "metrics.parquet")
    assert sorted(rows["step"].dropna().unique().tolist()) == [0, 1, 2]


def test_pandas_unable_to_load_pyarrow_is_reported_as_running_out_of_memory(tmp_path, monkeypatch):
    written = []
    write = pd.DataFrame.to_parquet

    def to_parquet(self, *args, **kwargs):  # the first write works, then memory runs out
        if written:
            raise ImportError(
                "Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.\n"
                "A suitable version of pyarrow or fastparquet is required for parquet support."
            )
        written.append(len(self))
        return write(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)
    with pytest.raises(MemoryError, match="ran out of memory with 4 ranks .ImportError: Unable"):
        run("allreduce", "quadratic", topologies.ring(4), steps=3, eval_every=1, out=tmp_path)
    assert _record(tmp_path)["status"] == "failed"
    assert len(pd.read_parquet(tmp_path / "metrics.parquet")) == written[0]


def test_a_genuinely_missing_parquet_engine_is_not_called_memory(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    assert not out_of_memory(ImportError("Unable to find a usable engine; tried using: ..."))
    assert out_of_memory(ImportError("libarrow.so: failed to map segment from shared object"))


def test_a_run_that_cannot_fit_in_memory_is_refused_before_anything_is_written(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("sim.memory.memory_limit", lambda: 10**6)  # a 1 MB machine
    with pytest.raises(ValueError) as caught:
        run("allreduce", "quadratic", topologies.star(64), steps=1, out=tmp_path / "run")
    message = str(caught.value)
    # 64 ranks at RANK_BYTES each are already more than 1 MB.
    assert message.startswith("topology: a simulated run on 64 hosts needs at least 4.")
    assert "more than the 1 MB of memory here" in message
    assert not (tmp_path / "run").exists()

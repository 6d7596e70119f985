"""The simulated device's memory in ``sim.run`` (``sim.device_memory``): a worker that does
not fit its device refused in one line, or timed with ``compute.memory="report"``; the
recorded estimate against an independent count; and a full run of a model larger than this
machine refused before it is allocated."""

import json
import sys
import time

import pytest
import torch

import sim
import workloads
from devices import DoesNotFit

H100_FLOPS = {"base": "flops", "device": "H100"}


def _one_line(text: str) -> str:
    assert "\n" not in text, text
    return text


@pytest.fixture
def never_built(monkeypatch):
    """Fail the test if the run builds its initial parameters (a replica of the model)."""

    def build(setup):
        raise AssertionError(f"the run built {setup.workload.name}'s parameters")

    monkeypatch.setattr(sys.modules["sim.run"], "initial_parameters", build)


@pytest.mark.parametrize("timing_only", [True, False])
def test_a_rank_that_does_not_fit_is_refused_in_one_line_naming_the_fixes(
    tmp_path, timing_only, never_built
):
    with pytest.raises(DoesNotFit) as err:
        sim.run(
            "allreduce",
            "llama3_70b",
            "star:n=2",
            steps=1,
            compute=H100_FLOPS,
            optimizer="adam",
            timing_only=timing_only,
            out=tmp_path / "run",
        )
    message = _one_line(str(err.value))
    assert message.startswith(
        "llama3_70b needs 2,038 GB per rank (parameters 141, gradients 141, master weights 282, "
        "optimizer state 564 (adam), activations 909) and the H100 has 80 GB; use "
    ), message
    assert "a smaller model" in message
    assert message.endswith("or compute.memory='report' to time its data-parallel dimension anyway")
    assert not (tmp_path / "run").exists()  # refused before anything is written or built


def test_report_times_the_run_warns_once_and_records_the_estimate(tmp_path):
    with pytest.warns(UserWarning, match="timed anyway") as caught:
        result = sim.run(
            "allreduce",
            "llama3_70b",
            "star:n=2",
            steps=2,
            compute={**H100_FLOPS, "memory": "report"},
            optimizer="adam",
            timing_only=True,
            out=tmp_path / "run",
        )
    assert len([w for w in caught if "timed anyway" in str(w.message)]) == 1
    summary = result.summary
    w = workloads.get("llama3_70b")
    n = w.parameter_count()
    # Mixed-precision Adam, 16 bytes a parameter (ZeRO's 16 Psi), plus the activations.
    assert summary["peak_memory_gb"] == pytest.approx((16 * n + w.activation_bytes()) / 1e9)
    assert summary["memory_optimizer_gb"] == pytest.approx(8 * n / 1e9)
    assert summary["device_memory_gb"] == 80.0
    assert summary["step_time"] > 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["summary"]["peak_memory_gb"] == summary["peak_memory_gb"]
    assert record["config"]["compute"]["memory"] == "report"


def test_the_recorded_estimate_of_a_small_transformer_matches_an_independent_count():
    """A full run of a float32 transformer with Adam: parameters, gradients and Adam's state
    counted on the real model and a real optimizer step, activations by hand from
    Korthikanti et al.'s accounting (no dropout, GELU, no grouped-query attention)."""
    workload = workloads.get("transformer", n_sequences=64)
    result = sim.run(
        "allreduce",
        workload,
        "star:n=2",
        steps=1,
        compute={"base": "flops", "device": "A100"},
        optimizer={"name": "adam", "lr": 1e-3},
    )
    model = workload.make_model(seed=0)
    params = [p for p in model.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    x = workload.x_train[:2]
    model(x).float().sum().backward()
    optimizer.step()
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in params)
    state_bytes = sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for key, t in state.items()
        if key != "step"
    )
    s, b, h, a, layers, vocab = 32, 8, 64, 4, 2, 256  # the builder's defaults
    per_layer = 4 * (s * b * h * (4 + 2 + 2 + 2 * 4) + a * s * s * b)
    activations = layers * per_layer + 4 * 2 * s * b * h + 4 * s * b * vocab
    summary = result.summary
    assert summary["memory_parameters_gb"] * 1e9 == pytest.approx(param_bytes)
    assert summary["memory_gradients_gb"] * 1e9 == pytest.approx(grad_bytes)
    assert summary["memory_master_gb"] == 0.0  # float32: no master copy
    assert summary["memory_optimizer_gb"] * 1e9 == pytest.approx(state_bytes)
    assert summary["memory_activations_gb"] * 1e9 == pytest.approx(activations)
    total = param_bytes + grad_bytes + state_bytes + activations
    assert summary["peak_memory_gb"] * 1e9 == pytest.approx(total)
    assert summary["device_memory_gb"] == 80.0


def test_a_full_run_larger_than_this_machine_is_refused_before_it_is_built(
    monkeypatch, never_built
):
    monkeypatch.setattr("sim.memory.memory_limit", lambda: 64 * 10**9)  # a 64 GB machine
    start = time.process_time()
    with pytest.raises(ValueError) as err:
        sim.run("allreduce", "llama3_70b", "star:n=2", steps=1)  # no device: no device check
    message = _one_line(str(err.value))
    assert message.startswith("workload: a full run of 2 replicas on this machine needs at least ")
    assert "more than the 64 GB of memory here (the simulator's, not the device's)" in message
    assert "use timing_only=True" in message
    assert time.process_time() - start < 30  # (a 141 GB replica would take minutes)


def test_a_timing_only_run_of_that_model_passes_this_machines_check(monkeypatch):
    monkeypatch.setattr("sim.memory.memory_limit", lambda: 64 * 10**9)
    timed = sim.run("allreduce", "llama3_70b", "star:n=2", steps=1, timing_only=True)
    assert "peak_memory_gb" not in timed.summary  # it names no device: nothing recorded


def test_runs_without_a_device_record_nothing_new():
    plain = sim.run("allreduce", "quadratic", "star:n=2", steps=2, eval_every=2)
    assert not any("memory" in key for key in plain.summary)
    assert plain.config["compute"]["memory"] == "check"


def test_zero_stages_match_the_papers_figure_1():
    """Rajbhandari et al. 2020, Figure 1: 7.5 B parameters, mixed-precision Adam (K = 12),
    64 data-parallel ranks: 120 GB, 31.4 GB with ZeRO-1 (P_os), 16.6 GB with ZeRO-2 (P_os+g)."""
    from devices import training_memory
    from sim.device_memory import zero_sharded

    whole = training_memory(7.5e9, 0, optimizer="adam", param_bytes=2)
    psi, k, n = 7.5e9, 12, 64
    assert whole.total == pytest.approx((2 + 2 + k) * psi) == pytest.approx(120e9)
    assert zero_sharded(whole, 1, n).total == pytest.approx(4 * psi + k * psi / n)
    assert zero_sharded(whole, 2, n).total == pytest.approx(2 * psi + (2 + k) * psi / n)
    assert round(zero_sharded(whole, 1, n).gb, 1) == 31.4
    assert round(zero_sharded(whole, 2, n).gb, 1) == 16.6


def test_a_zero_stage_that_would_fit_is_named_and_shards_the_recorded_estimate():
    from devices import peak_memory

    workload = workloads.get("gpt2_xl", batch_size=1)  # 30 GB a replica with Adam
    l4 = {"base": "flops", "device": "L4"}  # 24 GB
    with pytest.raises(DoesNotFit) as err:
        sim.run("allreduce", workload, "star:n=8", steps=1, compute=l4, optimizer="adam",
                timing_only=True)  # fmt: skip
    message = _one_line(str(err.value))
    assert "the L4 has 24 GB" in message
    assert "or compute.zero=1 (ZeRO-1: the same bytes on the wire as all-reduce)" in message
    with pytest.warns(UserWarning, match="timed anyway"):
        plain = sim.run("allreduce", workload, "star:n=8", steps=1,
                        compute={**l4, "memory": "report"}, optimizer="adam",
                        timing_only=True)  # fmt: skip
    sharded = sim.run("allreduce", workload, "star:n=8", steps=1, compute={**l4, "zero": 2},
                      optimizer="adam", timing_only=True)  # fmt: skip
    whole = peak_memory(workload, optimizer="adam")
    got = sharded.summary
    assert got["memory_parameters_gb"] * 1e9 == pytest.approx(whole.parameters)
    assert got["memory_gradients_gb"] * 1e9 == pytest.approx(whole.gradients / 8)
    assert got["memory_master_gb"] * 1e9 == pytest.approx(whole.master / 8)
    assert got["memory_optimizer_gb"] * 1e9 == pytest.approx(whole.optimizer / 8)
    assert plain.summary["peak_memory_gb"] * 1e9 == pytest.approx(whole.total)
    # A memory model only: the same run, the same clock and bytes.
    assert (got["time"], got["bytes"]) == (plain.summary["time"], plain.summary["bytes"])


@pytest.mark.parametrize(
    ("strategy", "compute", "message"),
    [
        ("diloco", {"base": "flops", "zero": 1}, "strategy diloco does not; set zero=0"),
        ("allreduce", {"base": 0.01, "zero": 2}, "compute.base=0.01 names no device"),
    ],
)
def test_a_zero_stage_where_it_means_nothing_is_one_line(strategy, compute, message):
    with pytest.raises(ValueError, match=message) as err:
        sim.run(strategy, "quadratic", "star:n=2", steps=1, compute=compute, timing_only=True)
    _one_line(str(err.value))


def _holding(cls, held):
    """``cls`` whose first worker's program locals are copied into ``held`` at each resume
    (the tensors its strategy keeps beside the replica; the last resume's win)."""

    class Held(cls):
        def worker(self, w):
            inner = super().worker(w)
            item = inner.send(None)
            while True:
                value = yield item
                if w.index == 0:
                    held.update(inner.gi_frame.f_locals)
                try:
                    item = inner.send(value)
                except StopIteration:
                    return

    return Held


def _state_bytes(optimizer):
    """Bytes of an optimizer's full-size buffers (momentum, Adam's moments)."""
    state = optimizer.optimizer.state[optimizer.param].values()
    return sum(t.numel() * t.element_size() for t in state if torch.is_tensor(t) and t.dim())


@pytest.mark.parametrize(
    "strategy, world, optimizer, keeps",
    [
        # its outer parameters and outer optimizer (Nesterov momentum), after an outer step
        ("diloco", 2, {"inner": {"name": "adam", "lr": 1e-3}}, ("start", "outer")),
        # the centre it pulled and its local optimizer (Adam)
        ("easgd", 3, {"local": {"name": "adam", "lr": 1e-3}}, ("center", "local")),
    ],
)
def test_a_strategys_state_in_the_estimate_is_what_its_workers_hold(
    strategy, world, optimizer, keeps
):
    """The independent count: the tensors a running worker's program holds beside its
    replica, read from the program itself."""
    from strategies import EASGD, DiLoCo

    held: dict = {}
    cls = {"diloco": DiLoCo, "easgd": EASGD}[strategy]
    workload = workloads.get("transformer", n_sequences=64)
    result = sim.run(
        _holding(cls, held)(period=2),
        workload,
        f"star:n={world}",
        steps=6,
        compute={"base": "flops", "device": "A100"},
        optimizer=optimizer,
    )
    tensor, opt = (held[name] for name in keeps)
    assert _state_bytes(opt) > 0
    nbytes = tensor.numel() * tensor.element_size() + _state_bytes(opt)
    summary = result.summary
    assert summary["memory_strategy_gb"] * 1e9 == pytest.approx(nbytes)
    others = ("parameters", "gradients", "master", "optimizer", "activations", "strategy")
    assert summary["peak_memory_gb"] == pytest.approx(
        sum(summary[f"memory_{part}_gb"] for part in others)
    )


def test_all_reduce_keeps_no_state_of_its_own_and_a_residual_with_error_feedback():
    workload = workloads.get("transformer", n_sequences=64)
    plain = sim.run("allreduce", workload, "star:n=2", steps=1, compute=H100_FLOPS)
    assert plain.summary["memory_strategy_gb"] == 0.0
    topk = sim.run("allreduce:compression=topk", workload, "star:n=2", steps=1, compute=H100_FLOPS)
    # A float32 residual of the whole gradient (strategies.compression.feedback).
    residual = workload.parameter_count() * 4
    assert topk.summary["memory_strategy_gb"] * 1e9 == pytest.approx(residual)


def test_a_strategys_state_is_named_in_a_refusal():
    with pytest.raises(DoesNotFit) as err:
        sim.run(
            "diloco",
            "llama3_8b",
            "star:n=2",
            steps=1,
            compute=H100_FLOPS,
            optimizer={"inner": "adamw"},
            timing_only=True,
        )
    message = _one_line(str(err.value))
    assert "strategy state 64 (outer parameters, outer optimizer state)" in message, message


@pytest.mark.parametrize(
    "strategy, optimizer",
    [
        # a parameter server's shard and its Adam moments (two servers: the larger shard)
        ("parameter_server", {"name": "adam", "lr": 1e-3}),
        # EASGD's centre on its server, stepped by plain SGD (no state)
        ("easgd", {"local": {"name": "sgd", "lr": 1e-3}}),
    ],
)
def test_a_servers_memory_in_the_summary_is_what_a_running_server_holds(strategy, optimizer):
    """The independent count: the tensors each running server holds, read from its context
    after the run: its shard, its optimizer's buffers, and a received shard (the gradient, or
    for EASGD a worker's parameters) of the shard's size and dtype."""
    from strategies import EASGD, ParameterServer

    seen: dict = {}
    cls = {"parameter_server": ParameterServer, "easgd": EASGD}[strategy]

    class Watched(cls):  # type: ignore[misc, valid-type]
        def server(self, s):  # type: ignore[no-untyped-def]
            seen[s.rank] = s
            return super().server(s)

    workload = workloads.get("transformer", n_sequences=64)
    kwargs = {"servers": 2, **({"period": 2} if strategy == "easgd" else {})}
    result = sim.run(
        Watched(**kwargs),
        workload,
        "star:n=5",
        steps=4,
        compute={"base": "flops", "device": "A100"},
        optimizer=optimizer,
    )
    held = []
    for s in seen.values():
        param = s.shard.param
        shard = param.numel() * param.element_size()
        held.append(2 * shard + _state_bytes(s.shard))
    assert sorted(seen) == [0, 1]
    assert (_state_bytes(seen[0].shard) > 0) == (strategy == "parameter_server")
    assert result.summary["server_memory_gb"] * 1e9 == pytest.approx(max(held))
    # The workers of a strategy whose servers step the optimizer hold no state of it.
    assert result.summary["memory_optimizer_gb"] == 0.0


def test_a_server_that_does_not_fit_is_refused_in_one_line_naming_it_and_the_fix():
    # A worker of llama3_8b (recomputing, batch 1) holds 76 GB: parameters, gradients and
    # master weights (2 + 2 + 4 bytes a parameter) and activations, no optimizer state; the
    # one server holds that for the whole model: mixed-precision Adam's 16 bytes a
    # parameter, 128 GB.
    wl = workloads.get("llama3_8b", recompute="full", batch_size=1)
    kw = dict(steps=1, compute=H100_FLOPS, optimizer="adam", timing_only=True)
    with pytest.raises(DoesNotFit) as err:
        sim.run("parameter_server", wl, "star:n=4", **kw)
    message = _one_line(str(err.value))
    gb = 16 * wl.parameter_count() / 1e9
    assert message.startswith(f"server rank 0's shard of llama3_8b needs {gb:.0f} GB"), message
    assert "use servers=2 (a smaller shard on each server)" in message
    assert "compute.memory='report'" in message
    # Two servers: 64 GB each, which fits; the summary records it.
    result = sim.run("parameter_server:servers=2", wl, "star:n=4", **kw)
    assert result.summary["server_memory_gb"] == pytest.approx(gb / 2, rel=1e-6)
    report = {**kw, "compute": {**H100_FLOPS, "memory": "report"}}
    with pytest.warns(UserWarning, match="server rank 0's shard"):
        sim.run("parameter_server", wl, "star:n=4", **report)

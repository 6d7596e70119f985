"""The compute model: exact times, straggler distributions against their moments, traces, errors."""

import math

import numpy as np
import pytest
import torch

import strategies
import topologies
import workloads
from sim.compute import DEVICE_PEAK_FLOPS, ComputeModel
from sim.run import run

DRAWS = 20_000


def resolved(seed=0, workload=None, **fields):
    model = ComputeModel(**fields)
    model.resolve(workload, seed=seed)
    return model


def factors(model, n=DRAWS, rank=0):
    return np.array([model.step_time(rank, step) for step in range(n)]) / model.seconds


def within_clt(samples, mean, std, z=5.0):
    """The sample mean is within ``z`` standard errors of ``mean``."""
    return abs(samples.mean() - mean) <= z * std / math.sqrt(samples.size)


class FlopsOnly:
    """A workload that only counts FLOPs: ``base="flops"`` must need nothing else."""

    def flops_per_step(self):
        return 3.5e12


# -- exact times -------------------------------------------------------------------------------


def test_constant_time_is_the_base_for_every_rank_and_step():
    model = resolved(base=0.02)
    assert model.seconds == 0.02
    assert {model.step_time(r, s) for r in range(4) for s in range(50)} == {0.02}


def test_slowdown_multiplies_one_rank_only():
    model = resolved(base=0.02, slowdown={3: 2.5})
    assert model.step_time(3, 0) == pytest.approx(0.05, rel=1e-15)
    assert model.step_time(2, 0) == 0.02


def test_micro_batches_multiply_the_time():
    model = resolved(base=0.02, slowdown={1: 3.0})
    assert model.step_time(0, 0, micro_batches=4) == pytest.approx(0.08, rel=1e-15)
    assert model.step_time(1, 0, micro_batches=4) == pytest.approx(0.24, rel=1e-15)


def test_accumulate_multiplies_each_workers_compute_time_in_a_run():
    base, steps, accumulate = 0.01, 3, 4
    result = run(
        "allreduce",
        "quadratic",
        topologies.star(2, bandwidth=1e15, latency=1e-12),
        steps=steps,
        compute=base,
        accumulate=accumulate,
        eval_every=steps,
    )
    workers = result.metrics[result.metrics["kind"] == "worker"]
    expected = steps * accumulate * base
    np.testing.assert_allclose(workers["compute_time"], expected, rtol=1e-9)
    assert result.summary["time"] == pytest.approx(expected, rel=1e-6)


def test_seconds_need_resolving_for_measure_and_flops():
    for base in ("measure", "flops"):
        with pytest.raises(RuntimeError, match="resolve"):
            _ = ComputeModel(base).seconds


def test_measure_gives_a_positive_time():
    model = resolved(base="measure", workload=workloads.get("quadratic"))
    assert 0 < model.seconds < 1.0
    assert model.step_time(0, 0) == model.seconds


@pytest.mark.parametrize("device, efficiency", [("H100", 0.4), ("A100", 1.0), ("V100", 0.25)])
def test_flops_is_work_over_peak_times_efficiency(device, efficiency):
    model = resolved(base="flops", workload=FlopsOnly(), device=device, efficiency=efficiency)
    assert model.seconds == pytest.approx(3.5e12 / (DEVICE_PEAK_FLOPS[device] * efficiency))


def test_flops_of_a_real_workload():
    workload = workloads.get("quadratic")
    model = resolved(base="flops", workload=workload, device="H200", efficiency=0.5)
    assert model.seconds == pytest.approx(workload.flops_per_step() / (989e12 * 0.5))


# -- straggler distributions -------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.2, 0.5])
def test_lognormal_factors_have_mean_one_and_the_given_log_sigma(sigma):
    f = factors(resolved(straggler="lognormal", options={"sigma": sigma}))
    assert within_clt(f, 1.0, math.sqrt(math.exp(sigma**2) - 1))
    logs = np.log(f)
    assert within_clt(logs, -(sigma**2) / 2, sigma)
    assert logs.std() == pytest.approx(sigma, rel=0.05)


def test_lognormal_default_sigma_is_half():
    f = factors(resolved(straggler="lognormal"))
    assert np.log(f).std() == pytest.approx(0.5, rel=0.05)


def test_normal_factors_have_mean_one_and_std_cv():
    f = factors(resolved(straggler="normal", options={"cv": 0.1}))
    assert within_clt(f, 1.0, 0.1)
    assert f.std() == pytest.approx(0.1, rel=0.05)


def test_normal_factors_are_clipped_at_five_percent():
    f = factors(resolved(straggler="normal", options={"cv": 2.0}), n=2000)
    assert f.min() == pytest.approx(0.05, rel=1e-12)
    # P(1 + 2Z < 0.05) = P(Z < -0.475) ~ 0.317 of the draws sit exactly on the floor.
    on_floor = np.isclose(f, 0.05, rtol=1e-12).mean()
    assert abs(on_floor - 0.3174) < 5 * math.sqrt(0.3174 * 0.6826 / f.size)


def test_exponential_with_probability_zero_is_constant():
    model = resolved(base=0.03, straggler="exponential", options={"prob": 0.0, "scale": 5.0})
    assert {model.step_time(0, s) for s in range(200)} == {0.03}


def test_exponential_tail_moments():
    prob, scale = 0.3, 2.0
    f = factors(resolved(straggler="exponential", options={"prob": prob, "scale": scale}))
    assert f.min() >= 1.0
    slow = f > 1.0
    assert abs(slow.mean() - prob) < 5 * math.sqrt(prob * (1 - prob) / f.size)
    # The extra time of a slow step is Exp(mean=scale).
    assert within_clt(f[slow] - 1.0, scale, scale)


def test_exponential_defaults_slow_every_step_by_half_on_average():
    f = factors(resolved(straggler="exponential"))
    assert (f > 1.0).all()
    assert within_clt(f - 1.0, 0.5, 0.5)


@pytest.mark.parametrize("straggler", ["normal", "lognormal", "exponential"])
def test_draws_repeat_with_the_seed_and_change_with_it(straggler):
    def draws(seed):
        model = resolved(seed=seed, straggler=straggler)
        return [model.step_time(r, s) for s in range(20) for r in range(3)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_resolving_again_restarts_the_draws():
    model = resolved(seed=3, straggler="lognormal")
    first = [model.step_time(0, s) for s in range(10)]
    model.resolve(None, seed=3)
    assert [model.step_time(0, s) for s in range(10)] == first


def test_slowdown_applies_on_top_of_the_straggler_draw():
    plain = resolved(seed=1, straggler="lognormal")
    slowed = resolved(seed=1, straggler="lognormal", slowdown={0: 4.0})
    for s in range(20):
        assert slowed.step_time(0, s) == pytest.approx(4.0 * plain.step_time(0, s), rel=1e-15)


# -- traces ------------------------------------------------------------------------------------


def test_a_trace_with_ranks_is_replayed_in_order_and_cycles(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("rank,seconds\n0,0.1\n1,0.5\n0,0.2\n0,0.3\n1,0.6\n")
    model = resolved(base=9.0, straggler="trace", options={"path": str(path)}, slowdown={1: 2.0})
    assert [model.step_time(0, s) for s in range(7)] == [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1]
    assert [model.step_time(1, s) for s in range(3)] == [1.0, 1.2, 1.0]
    # Micro-batch i of step s is entry s * micro_batches + i: consecutive entries add up.
    assert model.step_time(0, 0, micro_batches=2) == pytest.approx(0.1 + 0.2)
    assert model.step_time(0, 1, micro_batches=2) == pytest.approx(0.3 + 0.1)
    with pytest.raises(ValueError, match="rank 2"):
        model.step_time(2, 0)


def test_a_trace_without_ranks_draws_only_its_values(tmp_path):
    path = tmp_path / "times.csv"
    values = [0.011, 0.013, 0.017, 0.019]
    path.write_text("seconds,host\n" + "".join(f"{v},h{i}\n" for i, v in enumerate(values)))
    model = resolved(straggler="trace", options={"path": path})
    draws = [model.step_time(r, s) for s in range(200) for r in range(2)]
    assert set(draws) == set(values)  # every value, and nothing else
    counts = np.array([draws.count(v) for v in values])
    assert (np.abs(counts / len(draws) - 0.25) < 5 * math.sqrt(0.25 * 0.75 / len(draws))).all()
    again = resolved(straggler="trace", options={"path": path})
    assert [again.step_time(r, s) for s in range(200) for r in range(2)] == draws


def test_a_trace_draw_per_micro_batch(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("seconds\n1.0\n2.0\n")
    model = resolved(straggler="trace", options={"path": path})
    sums = {model.step_time(0, s, micro_batches=2) for s in range(100)}
    assert sums == {2.0, 3.0, 4.0}


# -- parse ---------------------------------------------------------------------------------------


def test_parse_accepts_numbers_names_dicts_and_models():
    assert ComputeModel.parse(0.5).base == 0.5
    assert ComputeModel.parse("measure").base == "measure"
    model = ComputeModel.parse({"base": 0.1, "slowdown": {"2": "3"}, "straggler": "normal"})
    assert (model.slowdown, model.straggler) == ({2: 3.0}, "normal")
    assert ComputeModel.parse(model) is model
    with pytest.raises(ValueError, match=r"^compute\.speed: compute has no argument 'speed'"):
        ComputeModel.parse({"speed": 1})


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"straggler": "pareto"}, "straggler='pareto'"),
        ({"base": -1.0}, "base=-1.0"),
        ({"base": 0}, "base=0"),
        ({"base": math.inf}, "base=inf"),
        ({"base": True}, "base=True"),
        ({"base": None}, "base=None"),
        ({"base": "fast"}, "base='fast'"),
        ({"slowdown": {1: 0.0}}, "slowdown={1: 0.0} must be a mapping of ranks to positive"),
        ({"slowdown": {1: "2"}}, "slowdown={1: '2'}"),
        ({"options": {"cv": 0.1}}, "options ['cv']"),
        ({"straggler": "normal", "options": {"sigma": 0.1}}, "options ['sigma']"),
        ({"straggler": "normal", "options": {"cv": -0.1}}, "cv=-0.1 must be a finite number >= 0"),
        ({"straggler": "normal", "options": {"cv": "big"}}, "cv='big'"),
        ({"straggler": "lognormal", "options": {"sigma": math.nan}}, "sigma=nan"),
        (
            {"straggler": "exponential", "options": {"prob": 1.5}},
            "prob=1.5 must be a number in [0, 1]",
        ),
        ({"straggler": "exponential", "options": {"scale": -2}}, "scale=-2"),
        ({"base": "flops", "device": "TPU"}, "device='TPU'"),
        ({"efficiency": 0.0}, "efficiency=0.0"),
        ({"efficiency": 1.5}, "efficiency=1.5"),
        ({"efficiency": "high"}, "efficiency='high'"),
        ({"straggler": "trace"}, "options={'path'"),
        ({"server": -1.0}, "server=-1.0"),
        ({"server": "fast"}, "server='fast'"),
        ({"contention": 0}, "contention=0"),
        ({"straggler": "trace", "options": {"path": "/nonexistent/times.csv"}}, "trace="),
    ],
)
def test_bad_fields_raise_one_line_errors_naming_the_field(fields, needle):
    with pytest.raises(ValueError) as err:
        ComputeModel(**fields)
    assert "\n" not in str(err.value)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        # A misspelt field was listed among the valid ones with no suggestion.
        (
            {"efficency": 0.5},
            "compute.efficency: compute has no argument 'efficency'; did you mean 'efficiency'?",
        ),
        (
            {"straggler_prob": 0.3},
            "compute.straggler_prob: compute has no argument 'straggler_prob'; "
            "did you mean 'straggler'?",
        ),
        # A straggler's parameter is said at its path in options, with the closest name.
        (
            {"straggler": "exponential", "options": {"prb": 0.3}},
            "compute.options.prb: options ['prb'] do not apply to straggler='exponential' "
            "(it takes ['prob', 'scale']); did you mean 'prob'?",
        ),
        (
            {"straggler": "exponential", "options": {"prob": 3}},
            "compute.options.prob: prob=3 must be a number in [0, 1]",
        ),
        # A compute field put among the straggler's parameters is pointed at.
        ({"options": {"contention": 2}}, "compute.options.contention: options ['contention']"),
        ({"efficiency": True}, "compute.efficiency: efficiency=True must be a number in (0, 1]"),
        ({"straggler": "trace"}, "compute.options.path: trace needs path"),
    ],
)
def test_parse_says_a_bad_field_at_its_path_with_the_closest_name(spec, message):
    with pytest.raises(ValueError) as err:
        ComputeModel.parse(spec)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)
    if spec == {"options": {"contention": 2}}:
        assert str(err.value).endswith("did you mean 'contention'?")


def test_every_accepted_input_is_kept_as_given_and_recorded_in_order():
    from fractions import Fraction

    model = ComputeModel(
        np.int64(2), "normal", {"cv": 1}, {1: np.float32(2.0), 2: 3}, "L4", Fraction(1, 2)
    )
    assert model.config() == {
        "base": np.int64(2),
        "straggler": "normal",
        "options": {"cv": 1},
        "slowdown": {1: np.float32(2.0), 2: 3},
        "device": "L4",
        "efficiency": Fraction(1, 2),
        "server": 0.0,
        "contention": 1.0,
        "memory": "check",
        "zero": 0,
    }
    assert list(model.config()) == [
        "base", "straggler", "options", "slowdown", "device", "efficiency", "server", "contention",
        "memory", "zero",
    ]  # fmt: skip
    assert type(model.config()["base"]) is np.int64  # nothing converted on the way
    assert repr(ComputeModel()) == (
        "ComputeModel(base=0.01, straggler='constant', options={}, slowdown={}, device='H100', "
        "efficiency=0.4, server=0.0, contention=1.0, memory='check', zero=0)"
    )
    assert ComputeModel(0.5) == ComputeModel.parse(0.5) != ComputeModel(0.25)
    assert ComputeModel().options is not ComputeModel().options  # no shared default


#: Step times of ranks 1 and 0 over two steps under seed 5, computed before the split.
PINNED = {
    "normal": [
        0.006548785260261436,
        0.011119271479387124,
        0.009770110938765352,
        0.009113360981670633,
    ],
    "lognormal": [
        0.004629005938997846,
        0.011547158494075258,
        0.00881634408052949,
        0.007731147423766017,
    ],
    "exponential": [0.01, 0.01, 0.01, 0.039107541706918915],
}


def test_a_straggler_draws_the_same_numbers_as_before_the_split():
    # Pinned from the model before its draws moved to sim.stragglers: the same generator
    # calls in the same order give these exact times.
    times = {}
    for straggler, options in [
        ("normal", {"cv": 0.2}),
        ("lognormal", {"sigma": 0.4}),
        ("exponential", {"prob": 0.3, "scale": 3}),
    ]:
        model = resolved(seed=5, base=0.01, straggler=straggler, options=options)
        times[straggler] = [model.step_time(r, s) for s in range(2) for r in (1, 0)]
    assert times == PINNED


@pytest.mark.parametrize(
    "text, needle",
    [
        ("rank,time\n0,0.1\n", "'seconds' column"),
        ("seconds\n0.1\n-0.2\n", "row 3 has seconds=-0.2"),
        ("seconds,rank\n0.1,0\n,1\n", "row 3 has seconds=nan"),
        # Infinite or day-long step times were a deadlock report, or a run of 1e300 s.
        ("seconds\n0.1\ninf\n", "row 3 has seconds=inf"),
        ("rank,seconds\n0,0.1\n1,1e300\n", "row 3 has seconds=1e+300"),
        # A rank outside 0.. was accepted (and never read).
        ("rank,seconds\n-1,0.1\n0,0.1\n", "row 2 has rank=-1"),
        ("rank,seconds\n0,0.1\n0.5,0.1\n", "row 3 has rank=0.5"),
        ("rank,seconds\n0,0.1\nx,0.1\n", "row 3 has rank='x'"),
        ("seconds\n0.1\n0.2,0.3,0.4\n", "not a readable CSV"),
        ("", "not a readable CSV"),
        ("seconds\nslow\n", "seconds"),
        ("seconds\n", "no rows"),
    ],
)
def test_bad_traces_raise_one_line_errors(tmp_path, text, needle):
    path = tmp_path / "times.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        ComputeModel(straggler="trace", options={"path": path})
    assert "\n" not in str(err.value)
    assert needle in str(err.value) and "trace" in str(err.value)


def test_each_rank_has_its_own_stream_independent_of_call_order():
    from sim.compute import ComputeModel

    a = ComputeModel(1.0, straggler="lognormal")
    b = ComputeModel(1.0, straggler="lognormal")
    a.resolve(None, seed=7)
    b.resolve(None, seed=7)
    order_a = [(r, a.step_time(r, k)) for k in range(3) for r in (0, 1, 2)]
    order_b = [(r, b.step_time(r, k)) for r in (2, 1, 0) for k in range(3)]
    assert sorted(order_a) == sorted(order_b)


def test_numpy_scalars_are_seconds_too():
    import numpy as np

    from sim.compute import ComputeModel

    for value in (np.int64(2), np.float32(0.5)):
        model = ComputeModel.parse(value)
        model.resolve(None, seed=0)
        assert model.step_time(0, 0) == float(value)


# -- the server's step, contention and traces from run directories ----------------------------


def _ps_time(server, servers=1, steps=6):
    star = topologies.star(3 + servers - 1, bandwidth="100Gbps", latency="1us")
    result = run(
        strategies.get("parameter_server", servers=servers),
        "mlp_digits",
        star,
        steps=steps,
        compute={"base": 0.01, "server": server},
    )
    return result


@pytest.mark.parametrize("servers", [1, 2])
def test_a_servers_step_lies_on_a_sync_servers_critical_path(servers):
    # Every step but the last waits for the server's update before its reply goes out, so
    # the run grows by (steps - 1) server steps, a shard's share of one with two servers.
    free, paid = _ps_time(0.0, servers), _ps_time(0.004, servers)
    grown = paid.summary["time"] - free.summary["time"]
    assert grown == pytest.approx(5 * 0.004 / servers, rel=1e-6)
    ranks = paid.ranks.set_index("rank")
    assert ranks.loc[0, "compute_time"] == pytest.approx(5 * 0.004 / servers, rel=1e-6)
    assert list(paid.evals["loss"]) == list(free.evals["loss"])  # time only, same maths


def test_server_measure_is_recorded_and_positive():
    result = run(
        "parameter_server", "mlp_digits", "star:n=3", steps=2, compute={"server": "measure"}
    )
    assert result.config["compute"]["server_seconds"] > 0


def test_contention_multiplies_every_compute_time():
    alone = run("local_sgd", "quadratic", "star:n=2", steps=4, compute=0.01)
    shared = run(
        "local_sgd", "quadratic", "star:n=2", steps=4, compute={"base": 0.01, "contention": 2.0}
    )
    assert shared.summary["time"] == pytest.approx(2 * alone.summary["time"], rel=1e-3)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_runs_compute_file_drives_a_trace_straggler_with_no_conversion(tmp_path, accumulate):
    drawn = run(
        "allreduce",
        "quadratic",
        "star:n=3",
        steps=8,
        accumulate=accumulate,
        compute={"base": 0.01, "straggler": "lognormal"},
        out=tmp_path / "drawn",
    )
    assert (tmp_path / "drawn" / "compute.csv").is_file()
    replayed = run(
        "allreduce",
        "quadratic",
        "star:n=3",
        steps=8,
        accumulate=accumulate,  # a row is a gradient, its micro-batches included
        compute={"straggler": "trace", "options": {"path": tmp_path / "drawn"}},
    )
    assert replayed.summary["time"] == drawn.summary["time"]
    assert replayed.compute.equals(drawn.compute)


def test_contention_is_refused_on_a_measured_trace(tmp_path):
    (tmp_path / "t.csv").write_text("seconds\n0.1\n")
    with pytest.raises(ValueError, match="include it already"):
        ComputeModel(straggler="trace", options={"path": tmp_path / "t.csv"}, contention=2.0)


def test_a_directory_without_a_compute_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="has no compute.csv"):
        ComputeModel(straggler="trace", options={"path": tmp_path})


class StepsThenGroups(strategies.Strategy):
    """A server whose call after its step is followed by a new group: the call must start
    after the step, and before the group (it was made first)."""

    name = "steps_then_groups_test_only"
    global_model = "servers"

    def servers(self, world_size):
        return [0]

    def server(self, s):
        for _ in range(3):
            _, grads, _ = yield s.comm.recv(torch.zeros(s.numel), src=1)
            s.apply(grads[0])
            yield s.comm.send(s.parameters(), dst=1)
            s.comm.new_group([0, 1])

    def worker(self, w):
        for _ in range(3):
            grads = yield w.compute_gradients()
            yield w.comm.send(grads, dst=0)
            yield w.comm.recv(torch.zeros(w.numel), src=0)
            w.comm.new_group([0, 1])


def test_a_call_held_behind_a_server_step_starts_in_program_order():
    free = run(StepsThenGroups(), "quadratic", "star:n=2", steps=3, compute=0.01)
    paid = run(
        StepsThenGroups(), "quadratic", "star:n=2", steps=3, compute={"base": 0.01, "server": 0.004}
    )
    # The reply of each of the first two steps waits for the step; the run ends at the third.
    assert paid.summary["time"] == pytest.approx(free.summary["time"] + 2 * 0.004, rel=1e-9)

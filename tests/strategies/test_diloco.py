"""DiLoCo and Streaming DiLoCo against Local SGD and each other, and on the real backend."""

import pytest
import torch

import topologies
from sim.run import run
from strategies import DiLoCo, LocalSGD, StreamingDiLoCo
from studies.conformance import check

ADAM = {"name": "adam", "lr": 0.01}


def simulate(strategy, steps=16, optimizer=ADAM, **kwargs):
    return run(
        strategy, "mlp_digits", topologies.star(4), steps=steps, optimizer=optimizer, **kwargs
    )


def test_outer_lr_one_without_momentum_is_local_sgd_with_the_same_inner_optimizer():
    plain = DiLoCo(period=4, outer_lr=1.0, outer_momentum=0.0, outer_nesterov=False)
    diloco, local = simulate(plain), simulate(LocalSGD(period=4))
    torch.testing.assert_close(diloco.parameters, local.parameters, rtol=1e-5, atol=1e-6)


def test_the_outer_step_is_what_an_evaluation_sees():
    # Nesterov momentum moves the outer model past the average: the evaluated model after a
    # round is the outer one, so it differs from Local SGD's average.
    diloco = simulate(DiLoCo(period=4), steps=8, eval_every=4)
    local = simulate(LocalSGD(period=4), steps=8, eval_every=4)
    at_four = [r.evals.set_index("step")["loss"][4] for r in (diloco, local)]
    assert at_four[0] != pytest.approx(at_four[1], rel=1e-4)
    assert diloco.evals.set_index("step")["consensus"][4] == 0


def test_a_run_can_name_both_optimizers():
    result = simulate(
        DiLoCo(period=4), optimizer={"inner": "adamw", "outer": {"name": "sgd", "lr": 0.5}}
    )
    assert result.config["optimizer"]["outer"] == {"name": "sgd", "lr": 0.5}
    assert result.config["optimizer"]["inner"]["name"] == "adamw"


def test_streaming_with_one_fragment_and_no_overlap_is_diloco():
    streaming = StreamingDiLoCo(period=4, fragments=1, overlap=0, alpha=0.0)
    a, b = simulate(streaming), simulate(DiLoCo(period=4))
    torch.testing.assert_close(a.parameters, b.parameters, rtol=0, atol=0)


def test_fragments_synchronise_at_staggered_steps_with_a_share_of_the_bytes():
    def nbytes(strategy, steps):
        return simulate(strategy, steps=steps).summary["bytes"]

    streaming = StreamingDiLoCo(period=6, fragments=3, overlap=0, alpha=0.0)
    assert [[t for t in range(1, 13) if streaming.syncs_at(f, t)] for f in range(3)] == [
        [6, 12],
        [4, 10],
        [2, 8],
    ]
    # Steps 8..12 hold one sync of each fragment, DiLoCo's one of the whole model.
    whole = nbytes(DiLoCo(period=6), 13) - nbytes(DiLoCo(period=6), 7)
    assert nbytes(streaming, 13) - nbytes(streaming, 7) == pytest.approx(whole, rel=0.01)


def test_overlapped_all_reduces_hide_behind_inner_steps():
    slow = {"bandwidth": "100Mbps", "latency": "1ms"}
    graph = topologies.star(4, **slow)
    kwargs = dict(steps=24, optimizer=ADAM, compute={"base": 0.01})
    waited = run(StreamingDiLoCo(period=6, fragments=3, overlap=0), "mlp_digits", graph, **kwargs)
    hidden = run(StreamingDiLoCo(period=6, fragments=3, overlap=2), "mlp_digits", graph, **kwargs)
    assert hidden.summary["time"] < waited.summary["time"]


def test_options_are_checked_in_one_line():
    for make, field in [
        (lambda: DiLoCo(outer_lr=-1), "outer_lr=-1"),
        (lambda: StreamingDiLoCo(period=6, fragments=7), "fragments=7"),
        (lambda: StreamingDiLoCo(alpha=1.0), "alpha=1.0"),
        (lambda: StreamingDiLoCo(compression="powersgd"), "powersgd"),
    ]:
        with pytest.raises(ValueError, match=field) as err:
            make()
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "strategy",
    [
        DiLoCo(period=4, compression="uint8"),
        StreamingDiLoCo(period=6, fragments=3, overlap=1, compression="qsgd"),
    ],
    ids=["diloco-uint8", "streaming-qsgd"],
)
def test_diloco_conforms_on_gloo(strategy):
    check(strategy, "mlp_digits", world_size=4, steps=20, optimizer=ADAM).raise_for_differences()

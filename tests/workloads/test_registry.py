"""Workloads by name."""

import pickle

import pytest
import torch
from torch import nn

import workloads
from workloads import Workload, registry

#: The built-in workloads: other tests register workloads of their own in the same process
#: (tests.return_workloads, at their import, which may come before this module's collection).
BUILTIN = [n for n in workloads.names() if registry.builder(n).__module__.startswith("workloads.")]


def test_names():
    # Built-ins only: other tests register workloads of their own in the same process.
    builtin = [
        n for n in workloads.names() if registry.builder(n).__module__.startswith("workloads.")
    ]
    assert builtin == [
        "acrobot",
        "cartpole",
        "cnn_digits",
        "custom",
        "gpt2_small",
        "gpt2_xl",
        "llama3_70b",
        "llama3_8b",
        "logistic_regression",
        "mlp_digits",
        "quadratic",
        "resnet50",
        "tiny_transformer",
        "transformer",
    ]


#: Sizes of the field: built and counted on the meta device only (tests/workloads/test_presets.py).
LARGE = {"gpt2_small", "gpt2_xl", "llama3_8b", "llama3_70b", "resnet50"}


@pytest.mark.parametrize("name", sorted(LARGE))
def test_every_large_builtin_builds_with_defaults_on_meta(name):
    w = workloads.get(name)
    assert isinstance(w, Workload) and w.name == name
    model = w.meta_model()
    x, y = w.meta_batch()
    assert model(x).shape[0] == len(y) == w.batch_size
    assert w.flops_per_step() > 0 and w.activation_bytes() > 0


@pytest.mark.parametrize("name", [n for n in BUILTIN if n not in LARGE | {"custom"}])
def test_every_builtin_builds_with_defaults_and_runs_one_step(name):
    kwargs = {"n_chars": 4000} if name == "tiny_transformer" else {}
    w = workloads.get(name, **kwargs)
    assert isinstance(w, Workload) and w.name == name
    model = w.make_model(0)
    # A worker's step through the one entry point both backends use (a batch, or a rollout).
    loss, samples = w.step_loss(model, w.stream(0, 2, seed=0))
    assert samples == w.batch_size
    loss.backward()
    metrics = {"loss", "accuracy"} if w.metric == "loss" else {w.metric, "episode_length"}
    assert w.metric in w.evaluate(model) and set(w.evaluate(model)) <= metrics
    assert w.flops_per_step() > 0


def test_get_passes_arguments():
    w = workloads.get("mlp_digits", batch_size=32, partition="dirichlet", alpha=0.5)
    assert (w.batch_size, w.partition_scheme, w.alpha) == (32, "dirichlet", 0.5)
    x = torch.randn(10, 2)
    c = workloads.get(
        "custom", model_factory=lambda: nn.Linear(2, 1), train=(x, x), test=(x, x), batch_size=2
    )
    assert c.name == "custom"


def test_unknown_name_lists_valid_names():
    with pytest.raises(
        ValueError, match="unknown workload 'vgg16'; choose one of acrobot, cartpole, cnn_digits"
    ) as e:
        workloads.get("vgg16")
    assert "\n" not in str(e.value) and "tiny_transformer" in str(e.value)
    with pytest.raises(ValueError, match="unknown workload 'resnet'; did you mean 'resnet50'?"):
        workloads.get("resnet")


def test_unknown_argument_lists_valid_ones():
    with pytest.raises(
        ValueError, match="no argument 'hiden'; did you mean 'hidden'.*valid: hidden"
    ) as err:
        workloads.get("mlp_digits", hiden=10)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"hidden": 0}, "^hidden=0 must be an integer >= 1"),
        ({"hidden": 2.5}, "^hidden=2.5 must be an integer >= 1"),  # refused before any maths
        ({"batch_size": True}, "^batch_size=True must be an integer >= 1"),
        ({"partition": "skewed"}, "^partition='skewed' is unknown; use one of iid"),
    ],
)
def test_builder_options_are_declared_and_checked_with_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        workloads.get("mlp_digits", **kwargs)
    assert err.value.field == next(iter(kwargs))


def test_register():
    workloads.register("toy_for_test", lambda **kw: workloads.quadratic(**kw))
    try:
        assert "toy_for_test" in workloads.names()
        assert workloads.get("toy_for_test", dim=3).A.shape[1] == 3
        with pytest.raises(ValueError, match="already registered"):
            workloads.register("toy_for_test", workloads.quadratic)
    finally:
        from workloads import registry

        registry._BUILDERS.pop("toy_for_test")


@pytest.mark.parametrize("name", [n for n in BUILTIN if n != "custom"])
def test_builtins_pickle_for_spawned_processes(name):
    kwargs = {"n_chars": 4000} if name == "tiny_transformer" else {}
    w = workloads.get(name, **kwargs)
    clone = pickle.loads(pickle.dumps(w))
    assert repr(clone) == repr(w)
    rank, n = (0, 1) if name in LARGE else (1, 3)
    if w.collects_experience:  # environments, not data: the same rollout on both sides
        model = w.make_model(0)
        rollout = w.collect(model, w.stream(rank, n, 5))
        assert torch.equal(rollout, clone.collect(model, clone.stream(rank, n, 5)))
    else:
        (x, y), (xc, yc) = next(w.batches(rank, n, 5)), next(clone.batches(rank, n, 5))
        assert torch.equal(x, xc) and torch.equal(y, yc)
    if name in LARGE:  # a real llama3_70b replica is 280 GB: compare the shapes on meta
        shapes = [p.shape for p in w.meta_model().parameters()]
        assert shapes == [p.shape for p in clone.meta_model().parameters()]
        return
    for p, pc in zip(w.make_model(2).parameters(), clone.make_model(2).parameters()):
        assert torch.equal(p, pc)


def test_config_records_the_registry_name_and_arguments():
    from workloads import get, quadratic

    assert get("mlp_digits", batch_size=16, hidden=8).config() == {
        "name": "mlp_digits",
        "batch_size": 16,
        "hidden": 8,
    }
    assert quadratic(batch_size=8).config()["batch_size"] == 8


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("tiny_transformer", {"d_model": 0}, "d_model=0"),
        ("mlp_digits", {"partition": "dirichlet", "alpha": "x"}, "alpha='x' must be a number > 0"),
    ],
)
def test_degenerate_arguments_are_refused_in_one_line(name, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        workloads.get(name, **kwargs)
    assert "\n" not in str(err.value)

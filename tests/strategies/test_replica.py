import pytest
import torch
from torch import nn

from strategies.optim import OptimizerSpec
from strategies.replica import FlatOptimizer, Replica, supervised


def _batches(seed):
    g = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))


def test_flat_gradient_equals_autograd_on_an_untouched_model():
    reference, replica = _model(), Replica(_model())
    x, y = next(_batches(1))
    nn.functional.cross_entropy(reference(x), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in reference.parameters()])
    grads, samples, _ = replica.compute_gradients(
        _batches(1), supervised(nn.functional.cross_entropy)
    )
    torch.testing.assert_close(grads, expected)
    assert samples == 8


def test_accumulation_averages_micro_batches():
    replica = Replica(_model())
    stream = _batches(2)
    one = [
        replica.compute_gradients(stream, supervised(nn.functional.cross_entropy))[0]
        for _ in range(3)
    ]
    averaged, samples, _ = Replica(_model()).compute_gradients(
        _batches(2), supervised(nn.functional.cross_entropy), accumulate=3
    )
    torch.testing.assert_close(averaged, sum(one) / 3)
    assert samples == 24


def test_apply_steps_the_module_parameters_in_place():
    replica = Replica(_model(), OptimizerSpec.parse({"name": "sgd", "lr": 0.5}))
    before = replica.parameters()
    grads = torch.ones(replica.numel)
    replica.apply(grads)
    torch.testing.assert_close(replica.parameters(), before - 0.5)
    first = next(replica.model.parameters())
    torch.testing.assert_close(first.detach().reshape(-1), replica.flat[: first.numel()])


def test_load_overwrites_parameters_seen_by_the_model():
    replica = Replica(_model())
    replica.load(torch.zeros(replica.numel))
    assert all(float(p.detach().abs().sum()) == 0 for p in replica.model.parameters())
    assert replica.model(torch.ones(1, 4)).abs().sum().item() == 0


def test_an_optimizer_restores_a_state_taken_before_its_first_step() -> None:
    # The checkpoint of step 0 (every rank restarted before the first checkpoint) has no
    # momentum buffer yet: restoring it gives an optimizer that never stepped, whose next
    # step equals a fresh one's.
    spec = OptimizerSpec.parse("sgd:lr=0.5,momentum=0.9")
    fresh = FlatOptimizer(torch.ones(3), spec)
    flat, numbers = fresh.export()
    assert flat.numel() == 3  # no buffer before the first step
    used = FlatOptimizer(torch.zeros(3), spec)
    used.step(torch.ones(3))
    used.restore(flat, numbers)
    used.step(torch.ones(3))
    fresh.step(torch.ones(3))
    assert torch.equal(used.param, fresh.param) and used.steps == fresh.steps == 1


def _torch_sgd_steps(start, grads, lrs, **options):
    """Torch's own SGD on a copy of ``start``, one step per gradient at each learning rate."""
    param = nn.Parameter(start.clone())
    optimizer = torch.optim.SGD([param], lr=lrs[0], **options)
    for grad, lr in zip(grads, lrs):
        optimizer.param_groups[0]["lr"] = lr
        param.grad = grad
        optimizer.step()
    return param.detach()


def test_plain_sgd_steps_without_torch_optimizer_step_and_matches_it_bit_for_bit(monkeypatch):
    # Plain SGD (no momentum, no weight decay) is param -= lr * grad: FlatOptimizer does that
    # add_ itself, skipping ~25 us of torch's step machinery, and must give torch's bits.
    from strategies.optim import ScheduleSpec

    torch.manual_seed(0)
    start = torch.randn(257)
    grads = [torch.randn(257) * 10 ** (k % 5 - 2) for k in range(12)]
    spec = OptimizerSpec.parse({"name": "sgd", "lr": 0.37})
    schedule = ScheduleSpec.parse("cosine")
    flat = FlatOptimizer(start.clone(), spec, schedule, total_steps=12)
    lrs = [0.37 * schedule.factor(k, 12) * 0.5 for k in range(12)]
    expected = _torch_sgd_steps(start, grads, lrs)

    def refused(*args, **kwargs):
        raise AssertionError("torch's SGD.step ran for plain SGD")

    monkeypatch.setattr(torch.optim.SGD, "step", refused)
    for grad in grads:
        flat.step(grad, lr_scale=0.5)
    assert torch.equal(flat.param.detach(), expected)
    assert flat.steps == 12
    assert flat.optimizer.param_groups[0]["lr"] == lrs[-1]


def test_sgd_with_momentum_or_a_hook_still_uses_torch_step():
    torch.manual_seed(0)
    start, grads = torch.randn(5), [torch.randn(5) for _ in range(3)]
    momentum = FlatOptimizer(start.clone(), OptimizerSpec.parse("sgd:lr=0.1,momentum=0.9"))
    for grad in grads:
        momentum.step(grad)
    assert torch.equal(
        momentum.param.detach(), _torch_sgd_steps(start, grads, [0.1] * 3, momentum=0.9)
    )
    assert "momentum_buffer" in momentum.optimizer.state[momentum.param]
    plain = FlatOptimizer(start.clone(), OptimizerSpec.parse("sgd:lr=0.1"))
    calls = []
    plain.optimizer.register_step_post_hook(lambda *args: calls.append(1))
    for grad in grads:
        plain.step(grad)
    assert calls == [1, 1, 1]
    assert torch.equal(plain.param.detach(), _torch_sgd_steps(start, grads, [0.1] * 3))


def test_a_global_hook_registered_later_still_runs_and_a_constant_schedule_gives_torchs_bits():
    # The plain path reads torch's global hook dicts (kept at import: torch fills them in
    # place) and skips a constant schedule's factor; neither may change what a step does.
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    torch.manual_seed(1)
    start, grads = torch.randn(33), [torch.randn(33) for _ in range(4)]
    flat = FlatOptimizer(start.clone(), OptimizerSpec.parse("sgd:lr=0.3"))
    calls = []
    handle = register_optimizer_step_pre_hook(lambda *args: calls.append(1))
    try:
        flat.step(grads[0], lr_scale=0.7)
    finally:
        handle.remove()
    assert calls == [1]
    for grad in grads[1:]:
        flat.step(grad, lr_scale=0.7)
    lr = 0.3 * 0.7
    assert torch.equal(flat.param.detach(), _torch_sgd_steps(start, grads, [lr] * 4))


@pytest.mark.parametrize(
    "spec",
    ["adam", {"name": "adamw", "amsgrad": True}, "sgd:lr=0.1,momentum=0.9", "sgd", "adagrad"],
)
def test_a_meta_optimizers_first_step_leaves_the_state_torchs_own_step_leaves(spec):
    # The reference: torch's optimizer on a meta parameter, stepped by torch itself.
    parsed = OptimizerSpec.parse(spec)
    reference = nn.Parameter(torch.empty(6, device="meta"))
    torch_opt = parsed.build([reference])
    reference.grad = torch.empty(6, device="meta")
    torch_opt.step()
    want = torch_opt.state.get(reference, {})
    for _ in range(2):  # the first makes the template, the second copies it
        opt = FlatOptimizer(torch.empty(6, device="meta"), parsed)
        opt.step(torch.empty(6, device="meta"))
        opt.step(torch.empty(6, device="meta"))
        got = opt.optimizer.state.get(opt.param, {})
        assert sorted(got) == sorted(want) and opt.steps == 2
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert (got[key].shape, got[key].dtype, got[key].device) == (
                    value.shape,
                    value.dtype,
                    value.device,
                )
                if value.device.type != "meta":  # a step count: the first step's
                    assert torch.equal(got[key], value)
            else:
                assert got[key] == value
        assert opt.export()[0].shape == (
            6 * (1 + sum(v.dim() > 0 for v in want.values() if isinstance(v, torch.Tensor))),
        )


def test_a_meta_optimizer_of_a_known_spec_and_shape_dispatches_no_step(monkeypatch):
    spec = OptimizerSpec.parse({"name": "adam", "lr": 1e-3})
    FlatOptimizer(torch.empty(5, device="meta"), spec).step(torch.empty(5, device="meta"))

    def refused(*args, **kwargs):
        raise AssertionError("a meta step was dispatched")

    monkeypatch.setattr(torch.optim.Adam, "step", refused)
    opt = FlatOptimizer(torch.empty(5, device="meta"), spec)
    opt.step(torch.empty(5, device="meta"))
    assert opt.steps == 1 and set(opt.optimizer.state[opt.param]) == {
        "step",
        "exp_avg",
        "exp_avg_sq",
    }
    assert float(opt.optimizer.state[opt.param]["step"]) == 1.0

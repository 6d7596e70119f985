"""Reference strategy programs for the contract tests, shared by every backend's tests.

Each program exercises one rule of the contract (the interface in ``strategies``) and reports
what it saw through ``w.log`` or its result, never through class attributes, so the same
program runs in ``sim`` and on real processes and is checked the same way
(``tests/strategies/test_contract.py``). They live in an importable module so that real
ranks import them by name.
"""

from __future__ import annotations

import torch

from strategies import AllReduceSGD, CommTimeout, ParameterServer, Strategy
from strategies.comm import CommError


class LoadsWithoutVersion(Strategy):
    """Loading parameters without ``version=`` is neither a step nor a version change."""

    name = "ref_loads_without_version"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            params = w.parameters()
            yield w.comm.all_reduce(params, op="mean")
            w.load_parameters(params)
            if w.version != w.step:  # apply moves the tag, loading does not
                raise AssertionError(f"version {w.version} != step {w.step}")


class OutsideItsGroup(Strategy):
    """A collective on a group the rank is not in."""

    name = "ref_outside_its_group"

    def worker(self, w):
        pair = w.comm.new_group([1, 2])
        yield w.comm.all_reduce(torch.ones(1), group=pair)


class GivesUpThenWaits(Strategy):
    """A timeout reaches the program at its yield; the receive goes on and completes."""

    name = "ref_gives_up_then_waits"
    global_model = "primary"

    def worker(self, w):
        if w.rank == 0:
            yield w.sleep(1.0)
            yield w.comm.send(torch.ones(2), dst=1, header={"n": 7})
            return
        pending = w.comm.recv(torch.empty(2), src=0)
        try:
            yield w.timeout(pending, 0.3)
        except CommTimeout:
            w.log(timed_out_at=w.now)
        _, (value,), header = yield pending
        w.log(received_at=w.now, value=float(value.sum()), n=header["n"])


class ForgetsTheYield(Strategy):
    """Applies a handle it forgot to yield."""

    name = "ref_forgets_the_yield"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            grads = w.comm.all_reduce(grads, op="mean")  # no yield
            w.apply(grads)


class YieldsATensor(Strategy):
    """Yields something that is not a handle."""

    name = "ref_yields_a_tensor"

    def worker(self, w):
        grads = yield w.compute_gradients()
        yield grads


class NotAGenerator(Strategy):
    """A role program that forgot to be a generator."""

    name = "ref_not_a_generator"

    def worker(self, w):
        w.compute_gradients()


class NoSuper(Strategy):
    """A strategy whose ``__init__`` skips ``super().__init__()``."""

    name = "ref_no_super"

    def __init__(self, period=2):
        self.period = period

    def worker(self, w):
        yield w.compute_gradients()


class ServersStepButAverageDeclared(ParameterServer):
    """Declares the workers' average as its global model, though only servers step."""

    name = "ref_servers_step_but_average"
    global_model = "average"


class IntMean(Strategy):
    """The mean of an integer tensor."""

    name = "ref_int_mean"

    def worker(self, w):
        yield w.comm.all_reduce(torch.ones(2, dtype=torch.int64), op="mean")


class SleepsZero(Strategy):
    name = "ref_sleeps_zero"

    def worker(self, w):
        yield w.sleep(0)


class TimesOutZero(Strategy):
    name = "ref_times_out_zero"

    def worker(self, w):
        yield w.timeout(w.comm.all_reduce(torch.ones(4)), 0)


class GathersByTree(Strategy):
    """Asks a collective for an algorithm it does not have."""

    name = "ref_gathers_by_tree"

    def worker(self, w):
        yield w.comm.all_gather(torch.ones(2), algorithm="tree")


class ManyTensors(Strategy):
    """A message whose header does not fit the real transport's envelope."""

    name = "ref_many_tensors"

    def worker(self, w):
        if w.rank == 0:
            yield w.comm.send([torch.zeros(2, 3, 4)] * 300, dst=1)


class BroadcastsIntoParameters(Strategy):
    """A parameter is a buffer for an in-place collective, as on gloo."""

    name = "ref_broadcasts_into_parameters"

    def worker(self, w):
        while not w.done:
            for p in w.model.parameters():
                yield w.comm.broadcast(p, src=0)
            grads = yield w.compute_gradients()
            w.apply(grads)


class WaitsInFinally(AllReduceSGD):
    """Waits on an operation in a ``finally`` while being closed after the stop."""

    name = "ref_waits_in_finally"

    def worker(self, w):
        try:
            while not w.done:
                grads = yield w.compute_gradients()
                grads = yield w.comm.all_reduce(grads, op="mean")
                w.apply(grads)
                # The stop reaches real ranks a moment after the last step: wait here for
                # it, so the program is closed at a yield in both backends.
                yield w.sleep(2.0)
        finally:
            yield w.comm.barrier()


class CatchesAFailedReceive(Strategy):
    """A failure reaches the program at its yield, where it can handle it."""

    name = "ref_catches_a_failed_receive"
    global_model = "primary"

    def worker(self, w):
        if w.rank == 0:
            yield w.comm.send(torch.ones(3), dst=1)
        else:
            try:
                yield w.comm.recv(torch.empty(2), src=0)  # wrong size
            except CommError as exc:
                named = "[(3,) float32] from rank 0 into buffers of [(2,) float32]" in str(exc)
                w.log(caught=1.0, named_the_shapes=float(named))


class AnyThenSpecific(Strategy):
    """A receive from any rank posted before one from rank 1: rank 1's first message goes
    to the specific receive, as gloo matches."""

    name = "ref_any_then_specific"
    global_model = "primary"

    def worker(self, w):
        if w.rank == 0:
            first = w.comm.recv(torch.zeros(1), src=None)
            second = w.comm.recv(torch.zeros(1), src=1)
            got_any, got_specific = yield w.comm.wait_all([first, second])
            w.log(any_got=got_any.header["n"], specific_got=got_specific.header["n"])
        else:
            yield w.sleep(1.0)  # rank 0 posts both receives first, even on a loaded machine
            one = w.comm.send(torch.ones(1), 0, header={"n": 1})
            two = w.comm.send(torch.ones(1), 0, header={"n": 2})
            yield w.comm.wait_all([one, two])


class Where(Strategy):
    """Logs each rank's node and local rank, as the topology (or launcher) places it."""

    name = "ref_where"
    global_model = "primary"

    def worker(self, w):
        w.log(node=w.node, local_rank=w.local_rank, nodes=len(set(w.nodes)))
        yield w.comm.barrier()


class TwoOptimizers(AllReduceSGD):
    """Declares an outer optimizer that the run's ``optimizer`` mapping configures."""

    name = "ref_two_optimizers"
    optimizers = {"inner": None, "outer": {"name": "sgd", "lr": 1.0}}

    def worker(self, w):
        outer = w.make_optimizer("outer", torch.zeros(1))
        w.log(outer_lr=outer.optimizer.param_groups[0]["lr"])
        outer.step(torch.ones(1))  # not a global step
        yield from super().worker(w)


class OuterStep(Strategy):
    """After each step the workers average, then move every replica by +1: the global model
    at an evaluation point includes that move (as DiLoCo's outer step)."""

    name = "ref_outer_step"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            params = w.parameters()
            yield w.comm.all_reduce(params, op="mean")
            w.load_parameters(params + 1.0)


class PlainAverage(OuterStep):
    """:class:`OuterStep` without the move."""

    name = "ref_plain_average"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            params = w.parameters()
            yield w.comm.all_reduce(params, op="mean")
            w.load_parameters(params)


class Disagree(Strategy):
    """Workers never communicate and start apart: the consensus distance is known."""

    name = "ref_disagree"

    def worker(self, w):
        w.load_parameters(w.parameters() + float(w.index))
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads * 0)


class NaturalLocalSGD(Strategy):
    """Local SGD as a newcomer writes it: step alone, average the parameters every
    ``period`` steps (the issue's example for counting samples the same in both backends)."""

    name = "ref_natural_local_sgd"

    def __init__(self, period: int = 3) -> None:
        super().__init__(period=period)
        self.period = period

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            if w.step % self.period == 0:
                params = w.parameters()
                yield w.comm.all_reduce(params, op="mean")
                w.load_parameters(params)


class CatchingAllReduce(Strategy):
    """A user's strategy: it averages over the world and, once a peer fails
    (``PeerFailure``, in either backend), trains alone."""

    name = "catching"
    global_model = "average"

    def worker(self, w):  # type: ignore[no-untyped-def]
        from strategies import PeerFailure

        alone = False
        while not w.done:
            grads = yield w.compute_gradients()
            if not alone:
                try:
                    grads = yield w.comm.all_reduce(grads, op="mean")
                except PeerFailure as failure:
                    w.log(failed_ranks=float(sum(failure.ranks)))
                    alone = True
                    w.lose()
                    continue
            w.apply(grads)


class CheckpointingLocal(Strategy):
    """Workers train alone, each writing its state every ``every`` steps and resting
    ``rest`` seconds a step; a restarted one takes its last checkpoint back (``restored``:
    the step it must find there, checked)."""

    name = "checkpointing_local"
    global_model = "average"

    def __init__(self, every: int = 5, rest: float = 0.0, restored: int | None = None) -> None:
        super().__init__(every=every, rest=rest, restored=restored)
        self.every, self.rest, self.restored = every, rest, restored

    def worker(self, w):  # type: ignore[no-untyped-def]
        if w.rejoined:
            step = yield w.load_checkpoint()
            assert self.restored is None or step == self.restored, step
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            if w.step % self.every == 0:
                yield w.save_checkpoint()
            if self.rest:
                yield w.sleep(self.rest)


class QuorumCollectives(Strategy):
    """A user's strategy with a server: its workers form quorums without it and run every
    collective of the communicator on each quorum's group, logging what each returned (a
    float64 sum and the first and last values); the server asks its own quorums. A failed
    round is dropped, as quorum all-reduce drops it."""

    name = "quorum_collectives"
    global_model = "average"

    def servers(self, world_size):  # type: ignore[no-untyped-def]
        return [0]

    def server(self, s):  # type: ignore[no-untyped-def]
        q = yield s.quorum()
        yield s.comm.barrier(group=q.group)

    def worker(self, w):  # type: ignore[no-untyped-def]
        import torch

        from strategies import PeerFailure

        def seen(name, value):  # type: ignore[no-untyped-def]
            flat = torch.cat([t.reshape(-1) for t in value]) if isinstance(value, list) else value
            return {
                f"{name}_sum": float(flat.double().sum()),
                f"{name}_first": float(flat[0]),
                f"{name}_last": float(flat[-1]),
            }

        while not w.done:
            q = yield w.quorum()
            # Values whose float32 sums depend on the order of three or more (1e8 - 1e8 + x).
            scale = (1.0, 1e8, -1e8, 3.0)[w.rank % 4] * (1 + w.step)
            x = torch.full((10,), scale) + torch.arange(10, dtype=torch.float32) / 7
            first, last = q.members[0], q.members[-1]
            logged: dict[str, float] = {"members": float(sum(2**r for r in q.members))}
            try:
                got = yield w.comm.all_reduce(x.clone(), op="sum", group=q.group)
                logged |= seen("all_reduce", got)
                got = yield w.comm.broadcast(x.clone(), src=last, group=q.group)
                logged |= seen("broadcast", got)
                got = yield w.comm.reduce(x.clone(), dst=first, op="sum", group=q.group)
                logged |= seen("reduce", got)
                got = yield w.comm.all_gather(x.clone(), group=q.group)
                logged |= seen("all_gather", got)
                got = yield w.comm.reduce_scatter(x.clone(), op="mean", group=q.group)
                logged |= seen("reduce_scatter", got)
                yield w.comm.barrier(group=q.group)
                grads = yield w.compute_gradients()
                grads = yield w.comm.all_reduce(grads, op="mean", group=q.group)
            except PeerFailure:
                w.lose(steps=1)
                continue
            w.log(**logged)
            w.apply(grads)

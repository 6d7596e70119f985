"""Compression codecs against independent references: byte formulas, error feedback,
PowerSGD's exactness, precision bounds, unbiasedness, majority vote, top-k, and the
collective composition through a lockstep fake communicator."""

import math
from types import SimpleNamespace

import pytest
import torch

from strategies.aggregate import reduce_tensors
from strategies.compression import Compression
from strategies.compression.sign import pack_bits, unpack_bits
from strategies.handles import Handle, done
from strategies.messages import message_nbytes

# -- a lockstep world: ranks' programs run round-robin; a collective resolves when every rank
# of the world has made it (reducing in rank order, as sim and the parameter server do).


class FakeWorld:
    def __init__(self, size):
        self.size = size
        self.slots = {}
        self.calls = [0] * size
        self.sent = [0] * size  # payload bytes each rank handed to collectives

    def collective(self, rank, kind, tensor, op):
        seq = self.calls[rank]
        self.calls[rank] += 1
        slot = self.slots.setdefault(seq, {})
        handle = Handle("comm", f"{kind} #{seq}")
        slot[rank] = (kind, tensor, op, handle)
        self.sent[rank] += message_nbytes([tensor])
        if len(slot) == self.size:
            kinds = {v[0] for v in slot.values()}
            assert len(kinds) == 1, f"ranks disagree on collective #{seq}: {kinds}"
            tensors = [slot[r][1] for r in range(self.size)]
            assert len({(t.shape, t.dtype) for t in tensors}) == 1
            if kind == "all_reduce":
                result = reduce_tensors(tensors, op)
                for r in range(self.size):
                    slot[r][1].copy_(result)
                    slot[r][3].resolve(slot[r][1])
            else:
                for r in range(self.size):
                    slot[r][3].resolve([t.clone() for t in tensors])
        return handle


class FakeComm:
    def __init__(self, world, rank):
        self.world, self.rank = world, rank

    def all_reduce(self, tensor, op="sum", group=None, algorithm="auto"):
        return self.world.collective(self.rank, "all_reduce", tensor, op)

    def all_gather(self, tensor, group=None, algorithm="auto"):
        return self.world.collective(self.rank, "all_gather", tensor, None)


def workers(size, numel, seed=0):
    world = FakeWorld(size)
    out = []
    for rank in range(size):
        w = SimpleNamespace(
            rank=rank, world_size=size, numel=numel, model=None, seed=seed, comm=None, charged=[]
        )
        w.comm = FakeComm(world, rank)
        w.compute = lambda seconds, w=w: (w.charged.append(seconds), done(None))[1]
        out.append(w)
    return world, out


def drive(programs):
    """Run generator programs in lockstep; return their return values."""
    handles = [next(p) for p in programs]
    results = [None] * len(programs)
    finished = [False] * len(programs)
    while not all(finished):
        progressed = False
        for i, p in enumerate(programs):
            if finished[i] or not handles[i].done:
                continue
            progressed = True
            try:
                handles[i] = p.send(handles[i].value)
            except StopIteration as stop:
                results[i], finished[i] = stop.value, True
        assert progressed, "deadlock: every program waits on an unfinished collective"
    return results


def all_reduce(spec, inputs, calls=1, shapes=None, seed=0):
    """Every rank all-reduces its input ``calls`` times with its own codec; the last means."""
    size, numel = len(inputs), inputs[0].numel()
    world, ws = workers(size, numel, seed)
    codecs = [spec.codec(w, numel=numel, shapes=shapes) for w in ws]

    def program(w, codec, x):
        mean = None
        for _ in range(calls):
            mean = yield from codec.all_reduce(w, x)
        return mean

    means = drive([program(w, c, x) for w, c, x in zip(ws, codecs, inputs)])
    return means, codecs, world, ws


def parse(name, **options):
    return Compression.parse({"name": name, "cost": 0, **options})


def codec_for(name, numel, at_rank=0, seed=0, shapes=None, salt="", **options):
    w = SimpleNamespace(rank=at_rank, world_size=1, numel=numel, model=None, seed=seed)
    return parse(name, **options).codec(w, numel=numel, shapes=shapes, salt=salt)


# -- byte counts ---------------------------------------------------------------------------

POWER_SHAPES = [(30, 20), (20,), (5, 4, 3), (7,)]
# (30 x 20, r=2) + (5 x 12, r=2) + 1-D 20 + 7, float32
POWER_BYTES = 4 * ((30 + 20) * 2 + (5 + 12) * 2 + 20 + 7)


@pytest.mark.parametrize(
    ("name", "options", "numel", "shapes", "nbytes"),
    [
        ("fp16", {}, 1001, None, 2 * 1001),
        ("bf16", {}, 1001, None, 2 * 1001),
        ("topk", {}, 1000, None, 8 * 10),
        ("topk", {}, 10, None, 8 * 1),  # k = max(1, ceil(0.01 * 10))
        ("topk", {"ratio": 0.333}, 1001, None, 8 * 334),
        ("randomk", {"ratio": 0.1}, 1001, None, 4 * 101 + 8),  # p2p: values + call counter
        ("qsgd", {}, 1001, None, 1001 + 4),
        ("uint8", {}, 1001, None, 1001 + 8),
        ("signsgd", {}, 1001, None, 126),
        ("powersgd", {}, 600 + 20 + 60 + 7, POWER_SHAPES, POWER_BYTES),
        ("powersgd", {"rank": 8}, 150, [(3, 50)], 4 * (3 + 50) * 3),  # rank clamped to 3
    ],
)
def test_point_to_point_payload_bytes_match_the_formula(name, options, numel, shapes, nbytes):
    codec = codec_for(name, numel, shapes=shapes, **options)
    payload = codec.encode(torch.randn(numel))
    assert message_nbytes(payload) == nbytes
    assert message_nbytes(codec.buffers()) == nbytes
    assert [(b.shape, b.dtype) for b in codec.buffers()] == [(p.shape, p.dtype) for p in payload]
    assert codec.ratio == pytest.approx(nbytes / (4 * numel))


@pytest.mark.parametrize(
    ("name", "options", "numel", "shapes", "nbytes"),
    [
        ("fp16", {}, 1001, None, 2 * 1001),
        ("topk", {"ratio": 0.05}, 1000, None, 8 * 50),
        ("randomk", {"ratio": 0.05}, 1000, None, 4 * 50),  # collective: values only
        ("qsgd", {"levels": 5}, 1000, None, 1004),
        ("uint8", {}, 1000, None, 1008),
        ("signsgd", {}, 1000, None, 125),
        ("powersgd", {}, 687, POWER_SHAPES, POWER_BYTES),
    ],
)
def test_collective_bytes_per_rank_match_the_formula(name, options, numel, shapes, nbytes):
    inputs = [torch.randn(numel) for _ in range(3)]
    _, codecs, world, _ = all_reduce(parse(name, **options), inputs, calls=2, shapes=shapes)
    assert world.sent == [2 * nbytes] * 3
    assert all(c.ratio == pytest.approx(nbytes / (4 * numel)) for c in codecs)


# -- error feedback ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "shapes"),
    [
        ("topk", {"ratio": 0.1}, None),
        ("randomk", {"ratio": 0.1}, None),
        ("powersgd", {"rank": 1}, [(10, 8), (20,)]),
    ],
)
def test_error_feedback_conserves_what_compression_drops(name, options, shapes):
    numel = 100
    codec = codec_for(name, numel, shapes=shapes, **options)
    torch.manual_seed(0)
    total_in, total_out = torch.zeros(numel), torch.zeros(numel)
    for _ in range(6):
        g = torch.randn(numel)
        before = codec.feedback.residual.clone()
        decoded = codec.decode(codec.encode(g))
        torch.testing.assert_close(g + before, decoded + codec.feedback.residual)
        total_in += g
        total_out += decoded
    assert codec.feedback.residual.abs().sum() > 0  # something was held back...
    # ...and nothing lost: everything sent plus what is owed is everything given.
    torch.testing.assert_close(total_in, total_out + codec.feedback.residual)


@pytest.mark.parametrize(
    ("name", "options", "shapes"),
    [
        ("topk", {"ratio": 0.1}, None),
        ("randomk", {"ratio": 0.1}, None),
        ("powersgd", {"rank": 1}, [(10, 10)]),
    ],
)
def test_error_feedback_through_a_single_rank_all_reduce(name, options, shapes):
    spec = parse(name, **options)
    _, (w,) = workers(1, 100)
    codec = spec.codec(w, shapes=shapes)
    for _ in range(3):
        g = torch.randn(100)
        before = codec.feedback.residual.clone()
        mean = drive([codec.all_reduce(w, g)])[0]
        torch.testing.assert_close(g + before, mean + codec.feedback.residual)


def test_powersgd_keeps_no_residual_for_the_tensors_it_sends_whole():
    # Several ranks: the averaged 1-D part differs from each rank's, but nothing of it was
    # dropped, so its residual stays zero (a regression: it kept local - mean, growing).
    shapes = [(10, 8), (20,)]
    _, ranks = workers(3, 100)
    codecs = [parse("powersgd", rank=1).codec(w, shapes=shapes) for w in ranks]
    for _ in range(5):
        drive([c.all_reduce(w, torch.randn(100)) for c, w in zip(codecs, ranks)])
    for codec in codecs:
        assert torch.equal(codec.feedback.residual[80:], torch.zeros(20))
        assert codec.feedback.residual[:80].abs().sum() > 0  # the matrix part is compressed


def test_without_error_feedback_the_dropped_part_is_lost():
    codec = codec_for("topk", 100, ratio=0.1, error_feedback=False)
    for _ in range(2):
        codec.encode(torch.randn(100))
    assert torch.equal(codec.feedback.residual, torch.zeros(100))


# -- per-scheme maths ----------------------------------------------------------------------


def rank_r(n, m, r, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, r, generator=g) @ torch.randn(r, m, generator=g)


@pytest.mark.parametrize("rank", [3, 5])
def test_powersgd_reconstructs_an_exactly_rank_r_matrix(rank):
    matrix = rank_r(40, 30, 3)
    bias = torch.randn(7)
    flat = torch.cat([matrix.reshape(-1), bias])
    codec = codec_for(
        "powersgd", flat.numel(), shapes=[(40, 30), (7,)], rank=rank, error_feedback=False
    )
    decoded = codec.decode(codec.encode(flat))
    torch.testing.assert_close(decoded, flat, atol=1e-4, rtol=1e-4)


def test_powersgd_below_the_true_rank_is_not_exact_and_warm_start_improves_it():
    matrix = rank_r(40, 30, 6)
    codec = codec_for("powersgd", 1200, shapes=[(40, 30)], rank=2, error_feedback=False)
    errors = [
        (codec.decode(codec.encode(matrix.reshape(-1))) - matrix.reshape(-1)).norm()
        for _ in range(4)
    ]
    assert errors[0] > 1e-2 * matrix.norm()
    assert errors[-1] < errors[0]  # warm start: one more power-iteration step a call
    # The best rank-2 approximation bounds what any rank-2 codec can do.
    s = torch.linalg.svdvals(matrix)
    assert errors[-1] >= s[2:].norm() * (1 - 1e-4)


def test_powersgd_all_reduce_of_shared_column_space_is_exact_and_has_two_rounds():
    u = torch.randn(40, 3)
    inputs = [torch.cat([(u @ torch.randn(3, 30)).reshape(-1), torch.randn(5)]) for _ in range(3)]
    shapes = [(40, 30), (5,)]
    means, codecs, world, ws = all_reduce(
        parse("powersgd", rank=3, error_feedback=False), inputs, shapes=shapes
    )
    expected = reduce_tensors(inputs, "mean")
    for mean in means:
        torch.testing.assert_close(mean, expected, atol=1e-4, rtol=1e-4)
        assert torch.equal(mean, means[0])
    assert world.calls == [2, 2, 2]


def test_powersgd_start_is_refused_in_one_line():
    _, (w,) = workers(1, 12)
    codec = parse("powersgd").codec(w, shapes=[(3, 4)])
    with pytest.raises(ValueError, match="powersgd needs two collective rounds") as info:
        codec.start(w, torch.zeros(12))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "bits"), [("fp16", 11), ("bf16", 8)])
def test_half_casts_round_trip_within_their_precision(name, bits):
    x = torch.randn(1000) * 100
    decoded = codec_for(name, 1000).decode(codec_for(name, 1000).encode(x))
    assert decoded.dtype == torch.float32
    assert ((decoded - x).abs() <= x.abs() * 2.0**-bits).all()
    assert not torch.equal(decoded, x)  # it did round


def test_fp16_all_reduce_divides_first_so_the_sum_does_not_overflow():
    inputs = [torch.full((10,), 40_000.0 + r) for r in range(4)]  # the sum would be inf
    means, *_ = all_reduce(parse("fp16"), inputs)
    expected = reduce_tensors(inputs, "mean")
    assert torch.isfinite(means[0]).all()
    torch.testing.assert_close(means[0], expected, rtol=2.0**-10, atol=0)


def test_qsgd_is_unbiased_and_on_its_levels():
    torch.manual_seed(0)
    x = torch.randn(50)
    codec = codec_for("qsgd", 50, levels=4)
    draws = torch.stack([codec.decode(codec.encode(x)) for _ in range(2000)])
    step = x.norm() / 4
    levels = draws / step
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    assert levels.abs().max() <= 4 + 1e-4
    # Per value the draw is one of two neighbouring levels: sd <= step / 2; 5 sd of the mean.
    tolerance = 5 * step / 2 / math.sqrt(2000)
    assert (draws.mean(0) - x).abs().max() < tolerance
    # ...which rounding to the nearest level would fail.
    assert ((x / step).round() * step - x).abs().max() > tolerance


def test_qsgd_draws_differ_per_rank_and_reproduce_per_seed():
    x = torch.randn(200)
    first = codec_for("qsgd", 200, at_rank=0).encode(x)[0]
    assert torch.equal(first, codec_for("qsgd", 200, at_rank=0).encode(x)[0])
    assert not torch.equal(first, codec_for("qsgd", 200, at_rank=1).encode(x)[0])
    assert not torch.equal(first, codec_for("qsgd", 200, at_rank=0, seed=1).encode(x)[0])
    assert torch.equal(
        codec_for("qsgd", 5).decode(codec_for("qsgd", 5).encode(torch.zeros(5))), torch.zeros(5)
    )


def test_uint8_error_is_at_most_half_a_step():
    x = torch.randn(10_000) * 3 + 1
    scale = (x.max() - x.min()) / 255
    decoded = codec_for("uint8", x.numel()).decode(codec_for("uint8", x.numel()).encode(x))
    error = (decoded - x).abs()
    assert error.max() <= scale / 2 * (1 + 1e-4)
    assert error.max() > scale / 4  # it does quantise
    constant = torch.full((7,), -2.5)
    assert torch.equal(
        codec_for("uint8", 7).decode(codec_for("uint8", 7).encode(constant)), constant
    )


def test_sign_bits_pack_eight_to_a_byte():
    bits = torch.rand(1003) < 0.5
    packed = pack_bits(bits)
    assert packed.dtype == torch.uint8 and packed.numel() == 126
    assert torch.equal(unpack_bits(packed, 1003), bits)
    assert pack_bits(torch.tensor([True] + [False] * 7 + [True])).tolist() == [1, 1]


@pytest.mark.parametrize("size", [3, 4])
def test_signsgd_majority_vote_equals_sign_of_summed_signs(size):
    inputs = [torch.randn(500) for _ in range(size)]
    means, *_ = all_reduce(parse("signsgd"), inputs)
    reference = torch.sign(sum(torch.where(x < 0, -1.0, 1.0) for x in inputs))
    assert torch.equal(means[0], reference)
    if size == 4:
        assert (reference == 0).any()  # ties happen and give 0
    zero = codec_for("signsgd", 3)
    assert zero.decode(zero.encode(torch.tensor([0.0, -1.0, 2.0]))).tolist() == [1.0, -1.0, 1.0]


def test_topk_picks_the_true_top_k():
    x = torch.randn(1000)
    codec = codec_for("topk", 1000, ratio=0.05, error_feedback=False)
    decoded = codec.decode(codec.encode(x))
    chosen = set(decoded.nonzero().flatten().tolist())
    assert chosen == set(torch.topk(x.abs(), 50).indices.tolist())
    assert torch.equal(decoded[list(chosen)], x[list(chosen)])


def test_topk_all_reduce_is_the_mean_of_each_ranks_top_k():
    inputs = [torch.randn(300) for _ in range(4)]
    means, *_ = all_reduce(parse("topk", ratio=0.1, error_feedback=False), inputs)
    sparse = []
    for x in inputs:
        s = torch.zeros(300)
        index = torch.topk(x.abs(), 30).indices
        s[index] = x[index]
        sparse.append(s)
    torch.testing.assert_close(means[0], reduce_tensors(sparse, "mean"))
    assert all(torch.equal(m, means[0]) for m in means)


@pytest.mark.parametrize("name", ["topk", "randomk"])
def test_full_ratio_all_reduce_is_the_plain_mean_bitwise(name):
    inputs = [torch.randn(257) for _ in range(4)]
    means, *_ = all_reduce(parse(name, ratio=1.0), inputs, calls=3)
    assert torch.equal(means[0], reduce_tensors(inputs, "mean"))


def test_randomk_indices_are_shared_by_ranks_and_differ_by_salt_and_call():
    a = codec_for("randomk", 1000, ratio=0.05)
    b = codec_for("randomk", 1000, at_rank=3, ratio=0.05)
    assert torch.equal(a.indices(0), b.indices(0))
    assert not torch.equal(a.indices(0), a.indices(1))
    assert not torch.equal(
        a.indices(0), codec_for("randomk", 1000, salt="params", ratio=0.05).indices(0)
    )
    inputs = [torch.randn(1000) for _ in range(3)]
    means, *_ = all_reduce(parse("randomk", ratio=0.05, error_feedback=False), inputs)
    index = a.indices(0)
    expected = torch.zeros(1000)
    expected[index] = reduce_tensors([x[index] for x in inputs], "mean")
    assert torch.equal(means[0], expected)


def test_randomk_point_to_point_decodes_on_a_receiver_with_another_history():
    sender = codec_for("randomk", 100, ratio=0.1, error_feedback=False)
    receiver = codec_for("randomk", 100, ratio=0.1, error_feedback=False)
    x = torch.randn(100)
    sender.encode(torch.randn(100))  # the sender is one call ahead
    payload = sender.encode(x)
    decoded = receiver.decode(payload)
    index = sender.indices(1)
    assert torch.equal(decoded[index], x[index])
    assert decoded.count_nonzero() == 10


def test_uint8_and_qsgd_all_reduce_close_to_the_mean():
    inputs = [torch.randn(1000) for _ in range(4)]
    expected = reduce_tensors(inputs, "mean")
    means, *_ = all_reduce(parse("uint8"), inputs)
    bound = max(float(x.max() - x.min()) / 255 / 2 for x in inputs)
    assert (means[0] - expected).abs().max() <= bound * (1 + 1e-4)
    means, *_ = all_reduce(parse("qsgd", levels=127), inputs)
    assert (means[0] - expected).abs().max() < max(float(x.norm()) for x in inputs) / 127


# -- start, shapes, charged compute --------------------------------------------------------


def test_start_returns_the_same_mean_as_all_reduce_and_keeps_the_shape():
    inputs = [torch.randn(6, 5) for _ in range(2)]
    world, ws = workers(2, 30)
    codecs = [parse("topk", ratio=1.0).codec(w) for w in ws]
    handles = [c.start(w, x) for c, w, x in zip(codecs, ws, inputs)]
    assert all(h.done for h in handles)
    assert handles[0].value.shape == (6, 5)
    assert torch.equal(handles[0].value, reduce_tensors(inputs, "mean"))
    assert all(w.charged == [] for w in ws)  # start charges nothing
    means, *_ = all_reduce(parse("fp16"), inputs)
    assert means[0].shape == (6, 5) and means[0].dtype == torch.float32


def test_decode_refuses_a_payload_of_another_layout():
    codec = codec_for("topk", 100)
    with pytest.raises(ValueError, match="codec.decode got a payload"):
        codec.decode([torch.zeros(3)])


@pytest.mark.parametrize(
    ("name", "decodes"), [("topk", 4), ("signsgd", 4), ("fp16", 1), ("randomk", 1)]
)
def test_all_reduce_charges_one_encode_and_a_decode_per_payload(name, decodes):
    spec = Compression.parse({"name": name, "cost": {"encode": 3.0, "decode": 5.0}})
    means, codecs, world, ws = all_reduce(spec, [torch.randn(1000) for _ in range(4)])
    assert ws[0].charged == pytest.approx([1000 * 3e-9, decodes * 1000 * 5e-9])


def test_powersgd_charges_its_flops_around_the_two_rounds():
    spec = Compression.parse(
        {"name": "powersgd", "rank": 2, "cost": {"encode": 1.0, "decode": 2.0, "flop": 0.5}}
    )
    means, codecs, world, ws = all_reduce(
        spec, [torch.randn(60) for _ in range(2)], shapes=[(6, 10)]
    )
    flops = 2 * 6 * 10 * 2  # one product
    expected = [
        (60 * 1.0 + flops * 0.5) * 1e-9,
        flops * 0.5 * 1e-9,
        (60 * 2.0 + flops * 0.5) * 1e-9,
    ]
    assert ws[0].charged == pytest.approx(expected)
    assert sum(expected[:2]) == pytest.approx(codecs[0].encode_seconds())


def test_free_compression_charges_no_compute():
    means, codecs, world, ws = all_reduce(parse("topk"), [torch.randn(100) for _ in range(2)])
    assert ws[0].charged == []


def test_powersgd_all_reduce_is_power_iteration_on_the_mean_matrix():
    # Below the true rank the result depends on Q: it equals one rank compressing the mean
    # only if every rank starts from the same Q (and warm-starts from the same Q after).
    inputs = [torch.randn(20 * 15) for _ in range(3)]
    spec = parse("powersgd", rank=2, error_feedback=False)
    means, *_ = all_reduce(spec, inputs, calls=2, shapes=[(20, 15)])
    (reference,), *_ = all_reduce(
        spec, [reduce_tensors(inputs, "mean")], calls=2, shapes=[(20, 15)]
    )
    torch.testing.assert_close(means[1], reference, atol=1e-5, rtol=1e-4)
    assert (reference - reduce_tensors(inputs, "mean")).abs().max() > 1e-2  # not exact

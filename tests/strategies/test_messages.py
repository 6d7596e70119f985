"""Messages: the envelope check's quick path never admits what the full encoding refuses."""

import torch

from strategies.messages import ENVELOPE_BYTES, _surely_fits, check_envelope, envelope


def test_the_quick_bound_covers_the_largest_message_it_admits():
    # 16 tensors of 8 dims with 19-digit-wide sizes cannot be allocated, but the signature
    # only reads shapes: meta tensors of the widest dtype name stand in for them.
    shape = (10**2,) * 7 + (1,)
    tensors = [torch.empty(shape, dtype=torch.complex128, device="meta")] * 16
    header = {f"{i:02d}" + "n" * 30: -1.7976931348623157e308 for i in range(16)}
    assert _surely_fits(header, tensors)
    actual = len(envelope(header, tensors, 2**63 - 1))
    widest_dims = actual + 16 * 8 * (19 - 3)  # each size written with 19 digits, not 3
    assert widest_dims <= ENVELOPE_BYTES - 8
    check_envelope(header, tensors)


def test_non_ascii_names_and_many_tensors_take_the_exact_check():
    assert not _surely_fits({"é": 1}, [torch.zeros(1)])
    assert not _surely_fits({}, [torch.zeros(1)] * 17)

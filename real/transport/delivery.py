"""Receiving a claimed message's payload into its receive's buffers, and finishing it.

Once an envelope has found its receive (:mod:`real.transport.matching`, or gloo's own
matching with ``portable=False``), the payload is received into the receive's buffers
(staged on a GPU), or copied from where it already landed; a payload whose shapes do not
fit the buffers is drained, so the sender still completes, and the receive fails with the
same :class:`~strategies.comm.CommError` the simulator raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from real.transport.completion import Completion
from real.transport.envelope import ENVELOPE_BYTES, ENVELOPE_TAG, Arrived, decode
from strategies.comm import CommError, Received, check_received

if TYPE_CHECKING:
    from real.transport.matching import Posted

__all__ = ["Delivery"]


class Delivery(Completion):
    """Payloads into buffers, and the receive's handle finished (a part of
    :class:`~real.transport.TorchTransport`)."""

    rank: int

    def _recv_native(self, posted: Posted) -> None:
        """gloo's own matching: the envelope receive names ``src``, or any rank."""
        frame = torch.empty(ENVELOPE_BYTES, dtype=torch.uint8, device=self.device)
        first = dist.irecv(frame, src=posted.src, tag=ENVELOPE_TAG)
        assert first is not None  # this rank is in the default group

        def wait() -> None:
            try:
                self._settle([first])
                sender = int(first._source_rank()) if posted.src is None else posted.src
                header, sent, tag = decode(frame.cpu())
            except Exception as exc:
                self._failed(posted, exc)
                return
            self._deliver(Arrived(sender, header, sent, tag, recv=posted))

        self._thread(wait)

    def _failed(self, posted: Posted, exc: Exception) -> None:
        # A peer the fault schedule killed makes it a PeerFailure, as a send's error is.
        error = self._failure(posted.handle, f"rank {self.rank}: {posted.handle.describe()}", exc)
        posted.handle.fail(error, at=self._clock())

    def _deliver(self, arrived: Arrived) -> None:
        """Receive the payload of a claimed envelope into its receive's buffers (draining it
        when it does not fit, so the sender completes), then finish that receive."""
        posted = arrived.recv
        assert posted is not None
        if arrived.payload is not None:  # received already: check it, copy it
            try:
                check_received(self.rank, arrived.src, arrived.sent, posted.buffers)
            except CommError as exc:
                posted.handle.fail(exc, at=self._clock())
                return
            for buffer, got in zip(posted.buffers, arrived.payload):
                buffer.copy_(got)
            done = Received(arrived.src, posted.buffers, arrived.header)
            posted.handle.resolve(done, at=self._clock(), started_at=posted.started)
            return
        mismatch: CommError | None = None
        try:
            try:
                check_received(self.rank, arrived.src, arrived.sent, posted.buffers)
                into = [self._buffer_for(b) for b in posted.buffers]
            except CommError as exc:
                mismatch = exc
                into = [
                    torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)
                    for shape, dtype in arrived.sent
                ]
            works = [dist.irecv(b, src=arrived.src, tag=arrived.tag) for b in into]
            self._settle(works)
            if mismatch is None:
                for buffer, moved in zip(posted.buffers, into):
                    if moved is not buffer:
                        buffer.copy_(moved)
            self._synchronize()
        except Exception as exc:
            self._failed(posted, exc)
            return
        if mismatch is not None:
            posted.handle.fail(mismatch, at=self._clock())
            return
        received = Received(arrived.src, posted.buffers, arrived.header)
        posted.handle.resolve(received, at=self._clock(), started_at=posted.started)

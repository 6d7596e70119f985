"""The real transport: each checked communicator call becomes ``torch.distributed`` calls.

One transport (:class:`TorchTransport`) serves gloo (CPU tensors) and NCCL (tensors on the
rank's GPU). Calls are issued with ``async_op=True`` and return
:class:`~strategies.handles.Handle` objects resolved from the library's completion; the
strategy's ``value = yield handle`` is where the rank blocks, exactly as in the simulator.

It is made of parts with one job each:

* :mod:`~real.transport.envelope`: what a message is on the wire (an envelope frame with
  the header and the payload's shapes, then the payload under a tag of its own);
* :mod:`~real.transport.staging`: the library's device, and tensors staged to it and back;
* :mod:`~real.transport.completion`: finishing handles (inline waits for CPU collectives,
  the library's futures, waiter threads that poll a GPU);
* :mod:`~real.transport.matching`: receives from any rank without the library's help, the
  matching written once in :mod:`strategies.matching` (the simulator's too);
* :mod:`~real.transport.delivery`: a matched message's payload into its receive's buffers;
* :mod:`~real.transport.core`: :class:`TorchTransport`, which starts the operations.

What NCCL's ordering still asks of a program: while a receive that accepts ``s`` is
pending, its envelope (then payload) receive is on the pair's stream, so a send to ``s``
issued meanwhile queues behind it (NCCL's own rule: two ranks that each post a receive from
the other and then send to it wait forever, unless the sends are small enough for NCCL to
buffer). The transport adds two cases: an envelope receive posted for a receive from any
rank that another sender then satisfied stays in flight until its sender's next message, as a
library receive cannot be withdrawn; and a kept envelope's payload stays on the pair's stream
until a receive claims it. Each pair needs its own NCCL communicator and stream, which torch
creates when ``init_process_group`` gets no ``device_id``; eagerly initialised, torch may run
point-to-point operations on the collective communicator, where a pending receive would hold
up every collective. NCCL's watchdog fails a receive left in flight once the process group's
timeout has passed, so give an NCCL process group a long one (the runtime bounds the
program's waits itself). On gloo a channel waits for its envelope without the process
group's timeout, so a receive left in flight never closes the world (gloo fails every pair
when one wait times out).
"""

from __future__ import annotations

from real.transport.core import TorchTransport
from real.transport.envelope import ENVELOPE_TAG

__all__ = ["ENVELOPE_TAG", "TorchTransport"]

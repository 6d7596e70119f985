"""Where the library moves tensors, and getting them there and back (staging).

On the CPU (gloo), tensors move as they are: no copies. On a GPU (NCCL), a tensor the
program keeps on the CPU (``torch.empty(n)``, written the natural way) is *staged*: copied to
the device for the operation, and the result copied back into the caller's tensor before the
handle resolves; receive buffers likewise, and the envelope frame lives on the device and is
copied to the CPU to be decoded. Threads the transport starts select its device first (the
current device is per thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

__all__ = ["Staging", "resolve_device"]


def resolve_device(device: torch.device | str) -> torch.device:
    """``device`` with its index: ``"cuda"`` is the current GPU."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class Staging:
    """The transport's device and its staging copies (a part of
    :class:`~real.transport.TorchTransport`; the methods are looked up on the transport, so
    a test may replace them on one)."""

    device: torch.device
    #: On a GPU: completion by polling, copies back, an event to synchronise on.
    _cuda: bool

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` if the library can move it, else a copy on the device (staging)."""
        return tensor if tensor.device == self.device else tensor.to(self.device)

    def _buffer_for(self, tensor: torch.Tensor) -> torch.Tensor:
        """Where the library can receive ``tensor``'s contents: itself, or a device buffer."""
        return (
            tensor if tensor.device == self.device else torch.empty_like(tensor, device=self.device)
        )

    def _synchronize(self) -> None:
        """On a GPU: wait for what this thread queued (copies back, a mean's division)."""
        if self._cuda:
            event = torch.cuda.Event(blocking=True)
            event.record()
            event.synchronize()

    def _thread(self, body: Callable[[], None]) -> None:
        """Run ``body`` on a daemon thread of its own, on the transport's device."""

        def run() -> None:
            if self._cuda:
                torch.cuda.set_device(self.device)  # the current device is per thread
            body()

        threading.Thread(target=run, daemon=True).start()

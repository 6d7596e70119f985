"""Which errors of a gloo process group mean that a peer died (or stopped answering).

What a survivor sees, measured on torch 2.13 (CPU, gloo, three processes on loopback; the
numbers are in the faults work's report, and :mod:`tests.real.test_membership` checks the
classification on a real SIGKILL):

* a peer SIGKILLed while the survivor is inside an all-reduce, a send or a receive with it:
  the kernel closes the dead process's sockets, and the survivor's operation raises at once
  (tens of milliseconds, not the group's timeout) a plain ``RuntimeError`` from gloo's TCP
  pair, ``"[.../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:PORT.
  This is typically caused by a remote worker crashing..."``. Every member of the
  collective raises, not only the dead rank's neighbours: a survivor whose own pair broke
  tears its context down, which closes its pairs with the others in turn. The address it
  names is whichever pair broke first, so it does **not** reliably name the dead rank (the
  heartbeats do: :meth:`real.membership.Membership.silent`);
* an operation started after the peer died, on a group that still has it: the same error,
  as soon as the operation touches the dead pair;
* a peer that is alive but does not answer (SIGSTOP, hung): the operation raises after the
  group's timeout, ``"[.../gloo/transport/tcp/unbound_buffer.cc:...] Timed out waiting
  2000ms for recv operation to complete"`` (or ``send``);
* building a group (its rendezvous on the store) with a member that never comes:
  ``torch.distributed.DistStoreError: wait timeout after 2000ms, keys: ...`` after the
  group's timeout.

A machine that vanishes without closing its sockets (power, a cut link) behaves as the hung
peer: the operation waits for the group's timeout (TCP keeps no heartbeat of its own soon
enough to matter).

Examples
--------
>>> is_peer_failure(RuntimeError(
...     "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
...     "[127.0.0.1]:4242. This is typically caused by a remote worker crashing."))
True
>>> is_peer_failure(ValueError("tensor sizes differ"))
False
"""

from __future__ import annotations

__all__ = ["PEER_FAILURE_SIGNS", "is_peer_failure"]

#: Words of the messages gloo (and the store, while a group meets) raises when a peer dies or
#: stops answering: a closed or reset connection, a write to a closed one, a refused
#: reconnection, an operation or a group's rendezvous that timed out.
PEER_FAILURE_SIGNS = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "connection refused",
    "timed out waiting",
    "wait timeout after",
)


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc``, raised by an operation of a gloo process group (or while building
    one), says that a peer died or stopped answering (see the module docstring for what each
    case raises).

    A programming error (a wrong size, a wrong dtype, a wrong rank) is not one; nor is any
    exception that is not a ``RuntimeError`` (torch's ``DistError`` family included).

    >>> is_peer_failure(RuntimeError(
    ...     "[../gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 2000ms for recv "
    ...     "operation to complete"))
    True
    >>> is_peer_failure(RuntimeError("Tensors must be contiguous"))
    False
    """
    if not isinstance(exc, RuntimeError):
        return False
    message = str(exc).lower()
    return any(sign in message for sign in PEER_FAILURE_SIGNS)

"""Which errors of a gloo process group mean that a peer died (or stopped answering).

What a survivor sees, measured on torch 2.13 (CPU, gloo, three processes on loopback, a
group timeout of 5 s; ``python tests/real/peer_failure_probe.py`` measures it again, and
:mod:`tests.real.test_membership` checks the classification on a real SIGKILL):

* a peer SIGKILLed while the survivor is in an all-reduce, a send or a receive *with it*: the
  kernel closes the dead process's sockets, and the survivor's operation raises within
  0.01-0.05 s (not the group's timeout) a plain ``RuntimeError`` from gloo's TCP pair:
  ``"[.../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:PORT. This
  is typically caused by a remote worker crashing..."`` or ``"[...pair.cc:537] Read error
  [127.0.0.1]:PORT: Connection reset by peer..."``. The address is whichever pair broke,
  not reliably the dead rank's (the heartbeats name it:
  :meth:`real.membership.Membership.dead`);
* a survivor waiting on *another survivor* (a receive from it, or an all-reduce phase that
  needs it) whose own operation failed: it waits for the group's timeout (4.7 s of 5) and
  raises ``"[...unbound_buffer.cc:78] Timed out waiting 5000ms for recv operation to
  complete"``, unless that other survivor **destroys its group** (drops every reference to
  it), which closes its connections: then it raises "Connection closed by peer" within
  0.02 s. ``abort()`` and ``shutdown()`` of a gloo group close nothing on torch 2.13;
* an operation started after the peer died, on a group that still has it: the same error
  within 0.002 s of the call;
* a peer that is alive but does not answer (SIGSTOP, hung, a machine gone without closing
  its sockets): the group's timeout, ``"Timed out waiting 5000ms for recv operation"`` (or
  ``send``, ``unbound_buffer.cc:129``);
* building a group whose member is dead (its rendezvous on the store):
  ``torch.distributed.DistStoreError: wait timeout after 5000ms, keys: ...`` after the
  group's timeout.

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

"""Nothing read from the run's store can run code, and only the run's ranks can write it."""

import io
import pickle
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from real import handin, rendezvous
from real.store import SignedStore, StoreTampered, new_secret
from strategies.events import Computed, Logged, Stepped


class _RunsAShellCommand:
    """What an attacker pickles: loading it runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _pickle_that_runs(marker) -> bytes:
    buffer = io.BytesIO()
    # protocol 2, as torch.save writes (a newer one only adds torch's warning about it)
    pickle.dump({"events": [], "x": _RunsAShellCommand(marker)}, buffer, protocol=2)
    return buffer.getvalue()


@pytest.fixture
def local_store():
    """The local launcher's store, and an outsider's client of it on loopback."""
    host = rendezvous.host_store(0, 2, timeout=10.0)
    outsider = dist.TCPStore("127.0.0.1", host.port, is_master=False, timeout=timedelta(seconds=5))
    return host, outsider


def test_the_local_store_listens_on_loopback_only(local_store):
    host, _ = local_store
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == host.port:
                listening.add(address)
    assert listening == {"0100007F"}  # 127.0.0.1, not 0.0.0.0 nor ::


def test_a_pickle_written_into_a_ranks_results_runs_nothing(local_store, tmp_path):
    """The proof of concept: a loopback client writes a pickle whose loading runs a shell
    command as rank 1's closing record; the gatherer refuses it and runs nothing."""
    host, outsider = local_store
    secret = new_secret()
    marker = tmp_path / "pwned"
    blob = _pickle_that_runs(marker)
    raw = rendezvous.namespace(outsider)
    raw.set("part/1/final/0", blob)
    raw.set("part/1/final", "1")
    gathered = handin.gather(SignedStore(rendezvous.namespace(host), secret), 2, lambda: 0.0)
    assert not marker.exists()
    assert gathered.parts == [None, None]
    assert "not written by a rank of this run" in gathered.refused[0]


def test_even_a_signed_pickle_is_loaded_as_data_only(local_store, tmp_path):
    """Should the secret leak, what is handed in is still read as tensors and plain data."""
    host, _ = local_store
    secret = new_secret()
    store = SignedStore(rendezvous.namespace(host), secret)
    marker = tmp_path / "pwned"
    store.set("part/1/final/0", _pickle_that_runs(marker))
    store.set("part/1/final", "1")
    gathered = handin.gather(store, 2, lambda: 0.0)
    assert not marker.exists()
    assert gathered.parts[1] is None
    assert (
        "rank 1's closing record on the run's store are not tensors and plain data"
        in (gathered.refused[0])
    )


def test_a_value_moved_to_another_key_or_forged_is_refused():
    raw = dist.HashStore()
    store = SignedStore(raw, new_secret())
    store.set("stop", "steps")
    raw.set("failed", bytes(raw.get("stop")))  # a valid value under the wrong key
    with pytest.raises(StoreTampered, match="'failed'"):
        store.get("failed")
    raw.set("stop", "forged")
    with pytest.raises(StoreTampered, match="'stop'"):
        store.get("stop")
    other = SignedStore(raw, new_secret())  # another run's secret
    other.set("stop", "steps")
    with pytest.raises(StoreTampered):
        store.get("stop")


def test_a_forged_failure_fails_the_run_as_tampered_with():
    raw = dist.HashStore()
    store = SignedStore(raw, new_secret())
    raw.set(rendezvous.FAILED_KEY, "rank 0 failed: forged")
    said = rendezvous.failure(store)
    assert "forged" not in said and "not written by a rank of this run" in said


def test_a_forged_stop_is_not_obeyed_but_fails_the_run():
    import time

    from real.runtime import STOP_KEY, StopSignal

    raw = dist.HashStore()
    store = SignedStore(raw, new_secret())
    signal = StopSignal(store, store, owners=1, rank=3)
    raw.set(STOP_KEY, "steps")
    assert signal.event.wait(5.0)
    assert signal.reason == "failed"
    time.sleep(0.1)
    assert rendezvous.failure(store).startswith("rank 3 failed: the value of 'stop'")


def test_without_a_secret_values_are_plain_and_still_never_executed(tmp_path):
    store = SignedStore(dist.HashStore(), None)
    store.set("k", "v")
    assert bytes(store.get("k")) == b"v" and not store.signed
    marker = tmp_path / "pwned"
    with pytest.raises(handin.HandInRefused):
        handin.decode_final(_pickle_that_runs(marker), rank=0)
    assert not marker.exists()


@pytest.mark.parametrize(
    "events,fault",
    [
        ({"not": "a list"}, "not a list"),
        ([("computed", 0.1)], "not a (kind, time, rank, ...) tuple"),
        ([("computed", float("nan"), 0, 1)], "time nan"),
        ([("computed", 0.1, 1, 1)], "rank 1, not 0"),
        ([("computed", 0.1, 0, -3)], "a 'computed' event"),
        ([("stepped", 0.1, 0, 0, "params")], "a 'stepped' event"),
        ([("logged", 0.1, 0, {"loss": [1, 2]})], "a 'logged' event"),
        ([("rm -rf", 0.1, 0, 1)], "unknown kind 'rm -rf'"),
    ],
)
def test_malformed_events_are_refused_naming_the_fault(events, fault):
    with pytest.raises(handin.HandInRefused, match="rank 0's events") as err:
        handin.decode_events(handin.encode(events), rank=0)
    assert fault in str(err.value)


def test_a_well_formed_part_round_trips():
    events = [
        ("computed", 0.1, 0, 32),
        ("sent", 0.2, 0, 64.0),
        ("stepped", 0.3, 0, 1, torch.ones(3)),
        ("settled", 0.3, 0, torch.zeros(3)),
        ("logged", 0.4, 0, {"period": 4, "ratio": 0.5, "note": "x", "norm": torch.tensor(1.0)}),
    ]
    back = handin.decode_events(handin.encode(events), rank=0)
    # What travels is plain tuples; what comes back is the typed events they stand for.
    assert [(e.kind, e.at, e.rank) for e in back] == [e[:3] for e in events]
    assert [type(e).__name__ for e in back] == ["Computed", "Sent", "Stepped", "Settled", "Logged"]
    final = {
        "error": None,
        "final": torch.ones(3),
        "stop_reason": "steps",
        "ended": "stopped",
        "times": (1.0, 0.5, 0.25, 0.125),
        "gradients": [0.1, 0.2],
        "trace": {"spans": [("comm", "recv", 0.0, 0.1, None)], "dropped": 0, "totals": {}},
    }
    assert handin.decode_final(handin.encode(final), rank=0)["times"] == (1.0, 0.5, 0.25, 0.125)


def test_events_handed_in_as_they_go_are_kept_for_a_rank_that_never_closed():
    store = SignedStore(dist.HashStore(), new_secret())
    events = [Computed(0.1, 1, 32)]
    rank1 = handin.HandIn(store, rank=1, every=0.0)
    rank1.events(events)
    events.append(Stepped(0.2, 1, 0, None))
    rank1.events(events)  # then killed: no closing record
    gathered = handin.gather(store, 2, lambda: 0.0)
    assert gathered.parts[0] is None
    assert gathered.parts[1]["events"] == events
    assert gathered.parts[1]["error"] is None and not gathered.refused


def test_real_never_unpickles_what_peers_send():
    """torch's *_object collectives unpickle what peers send, and the process group's own
    rendezvous keys are not signed: real/ must use tensors (and load files weights-only)."""
    import ast
    from pathlib import Path

    import real

    banned = {
        "all_gather_object",
        "broadcast_object_list",
        "gather_object",
        "scatter_object_list",
        "send_object_list",
        "recv_object_list",
        "loads",  # pickle.loads / cloudpickle.loads
    }
    found = []
    for source in Path(real.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in banned:
                if not (node.attr == "loads" and getattr(node.value, "id", "") == "json"):
                    found.append(f"{source.name}:{node.lineno} {node.attr}")
            if isinstance(node, ast.keyword) and node.arg == "weights_only":
                if isinstance(node.value, ast.Constant) and node.value.value is False:
                    found.append(f"{source.name}:{node.lineno} weights_only=False")
    assert not found


def test_a_signal_handler_only_raises_a_flag_and_the_watcher_stops_the_rank():
    from real.runtime import StopSignal

    store = SignedStore(dist.HashStore(), new_secret())
    signal = StopSignal(store, store, owners=1, rank=0)
    signal.interrupt()  # what the handler calls: no lock taken, no store call
    assert signal.event.wait(5.0) and signal.reason == "interrupted"
    assert not store.check(["stop"])  # the rank's own thread tells the others


def test_logged_values_travel_as_the_ledger_reads_them():
    from fractions import Fraction

    import numpy as np

    store = SignedStore(dist.HashStore(), new_secret())
    events = [
        Logged(0.1, 0, {"a": np.float32(0.5), "b": Fraction(1, 4), "c": torch.tensor(2.0)}),
        Logged(0.2, 0, {"d": True, "e": 3}),
    ]
    handin.HandIn(store, rank=0, every=0.0).events(events)
    (part,) = handin.gather(store, 1, lambda: 0.0).parts
    assert [e.values for e in part["events"]] == [
        {"a": 0.5, "b": 0.25, "c": 2.0},
        {"d": True, "e": 3.0},
    ]


def _hand_in_two_batches(store, rank, hold, close):
    """A rank's events in two batches (a snapshot in each), closed or not."""
    from strategies.events import Settled

    sender = handin.HandIn(store, rank, every=0.0, hold_states=hold)
    events = [Computed(0.1, rank, 32), Stepped(0.2, rank, 0, torch.full((3,), 1.0))]
    sender.events(events, force=True)
    events += [Settled(0.3, rank, torch.full((3,), 2.0)), Stepped(0.4, rank, 0)]
    if close:
        sender.final(events, {"error": None, "final": None, "stop_reason": "steps"})
    else:
        sender.events(events, force=True)
    return events


def _states(part):
    return [
        None if getattr(e, "state", None) is None else e.state.tolist()
        for e in part["events"]
        if e.kind in ("stepped", "settled")
    ]


@pytest.mark.parametrize("hold", [False, True])
def test_held_states_come_back_in_place_and_are_not_in_the_batches(hold):
    raw = dist.HashStore()
    store = SignedStore(raw, new_secret())
    _hand_in_two_batches(store, 0, hold, close=True)
    batches, _ = handin.read_batches(store, 0)
    sent = [
        e.state.numel() for e in batches if e.kind in ("stepped", "settled") and e.state is not None
    ]
    # Nothing of the model while training (the first batch); the closing batch, sent when
    # training is over, carries its own state.
    assert sent == ([0, 3] if hold else [3, 3])
    gathered = handin.gather(store, 1, lambda: 0.0)
    assert _states(gathered.parts[0]) == [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], None]


def test_a_rank_that_never_closed_keeps_its_steps_but_not_its_held_states():
    store = SignedStore(dist.HashStore(), new_secret())
    _hand_in_two_batches(store, 0, hold=True, close=False)
    part = handin.gather(store, 1, lambda: 0.0).parts[0]
    assert [e.kind for e in part["events"]] == ["computed", "stepped", "stepped"]
    assert _states(part) == [None, None]

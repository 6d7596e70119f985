"""How fast does TCP move data over a shaped link while other traffic shares it?

Needs root: builds the testbed of ``sim_vs_real.py``'s two-level tree (two nodes of two hosts,
1 Gbit/s host links, 100 Mbit/s node uplinks), then times plain TCP transfers (one Python
socket each, no torch) from host 2 (node 1) to host 0 (node 0), across the uplink:

* **alone**;
* **same way**: host 3 sends to host 1 at the same time (two flows, one direction of the
  uplink: max-min fair sharing would give each half);
* **two way**: host 0 sends to host 3 at the same time (the other direction of the uplink:
  a full-duplex link model gives each flow the whole link).

Each case runs ``--repeats`` times; the table gives every measured rate (MB/s of payload).
This is the measurement behind the one case of ``sim_vs_real.py`` that misses by more
than 10% at 100 Mbit/s (an asynchronous server on the tree, where workers' pushes and the
server's replies cross the uplink in opposite directions at the same time).

Run: ``sudo .venv/bin/python benchmarks/two_way_tcp.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

SPEC = "hierarchical:nodes=2,gpus_per_node=2,intra_bandwidth=1Gbps,inter_bandwidth=50Mbps"
NAME = "twoway"
PORT = 5301
CHUNK = 1 << 20


def _address(rank: int) -> str:
    """A testbed host's address (the testbed numbers hosts 10.77.0.1, .2, ... by rank)."""
    return f"10.77.0.{rank + 1}"


def _in_host(rank: int, *args: str) -> list[str]:
    return ["ip", "netns", "exec", f"{NAME}-h{rank}", sys.executable, __file__, *args]


def transfers(flows: list[tuple[int, int]], megabytes: int) -> list[float]:
    """Run ``(src, dst)`` transfers of ``megabytes`` each at once; each one's MB/s."""
    servers = [
        subprocess.Popen(_in_host(dst, "serve", str(PORT + i)), stdout=subprocess.PIPE, text=True)
        for i, (_, dst) in enumerate(flows)
    ]
    time.sleep(0.5)  # the listeners are up
    senders = [
        subprocess.Popen(_in_host(src, "send", _address(dst), str(PORT + i), str(megabytes)))
        for i, (src, dst) in enumerate(flows)
    ]
    for sender in senders:
        sender.wait()
    return [float(server.communicate()[0]) for server in servers]


def _serve(port: int) -> None:
    """Receive one connection until it closes; print its payload MB/s."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(1)
        connection, _ = listener.accept()
        received, start = 0, None
        while chunk := connection.recv(CHUNK):
            start = start or time.perf_counter()
            received += len(chunk)
        print(received / (time.perf_counter() - (start or 0)) / 1e6)


def _send(host: str, port: int, megabytes: int) -> None:
    with socket.create_connection((host, port)) as connection:
        block = b"\0" * CHUNK
        for _ in range(megabytes):
            connection.sendall(block)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        return _serve(int(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "send":
        return _send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--megabytes", type=int, default=30, help="per transfer")
    args = parser.parse_args()
    commsim = [sys.executable, "-c", "from studies.cli import main; main()"]
    subprocess.run([*commsim, "testbed", "up", SPEC, "--name", NAME], check=True)
    try:
        cases = {
            "alone": [(2, 0)],
            "same way (3 -> 1 too)": [(2, 0), (3, 1)],
            "two way (0 -> 3 too)": [(2, 0), (0, 3)],
        }
        print(f"\nMB/s of payload over the 100 Mbit/s uplink, {args.megabytes} MB per transfer")
        print("| case | 2 -> 0 | the other flow |\n|---|---|---|")
        for case, flows in cases.items():
            for _ in range(args.repeats):
                rates = transfers(flows, args.megabytes)
                other = f"{rates[1]:.2f}" if len(rates) > 1 else ""
                print(f"| {case} | {rates[0]:.2f} | {other} |", flush=True)
    finally:
        subprocess.run([*commsim, "testbed", "down", NAME], check=False)


if __name__ == "__main__":
    main()

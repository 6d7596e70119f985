"""What a testbed is made of, worked out from a topology before anything is created.

One network namespace per host (``NAME-h<rank>``) and per switch (``NAME-s<index>``); a
Linux bridge (``br0``) inside every switch's namespace, and inside a host's when traffic
crosses it (a host with several links forwards at layer 2, as a switch would); a veth pair
per edge, each end created directly in its namespace (``l<edge>``), so no interface is ever
made in the machine's own namespace; ``tbf`` on both ends of every link (each end shapes
what it sends, so each direction has the link's rate), and ``netem`` delay where the kernel
has it. The whole testbed is one layer-2 segment of private addresses (``10.77.0.0/16``),
which only exist inside its namespaces: a tree has no loop, so no spanning tree is needed.

Beside the topology, a *management network*, as a real cluster has one out of band: a
namespace ``NAME-m`` with a bridge, an unshaped veth from every host (``mgmt``, address
``10.78.M.<rank + 1>``) and one to the machine's own namespace (``NAME-m``, the gateway
``10.78.M.254``), where the run's launcher hosts the run's store. It is not part of the
topology: no ``tbf``, no link fault reaches it, and training traffic never takes it (the
ranks' collectives are bound to the topology's device). ``M`` (1-250) is drawn from the name,
and ``up`` moves it to a subnet this machine does not use yet.

Examples
--------
>>> import topologies
>>> plan = make_plan(topologies.star(3, bandwidth="100Mbps", latency="1ms"), "tb")
>>> plan.namespaces
['tb-h0', 'tb-h1', 'tb-h2', 'tb-s0']
>>> plan.management_namespace, plan.gateway, plan.management_address(2)
('tb-m', '10.78.114.254', '10.78.114.3')
>>> plan.hosts[1].address, plan.links[1]
('10.77.0.2', Link(index=1, a=End(namespace='tb-h1', device='l1a', bridged=False), b=End(namespace='tb-s0', device='l1b', bridged=True), rate=12500000.0, delay=0.001))
>>> make_plan(topologies.ring(4), "tb")
Traceback (most recent call last):
...
real.testbed.plan.TestbedError: topology: a testbed must be a tree (it is one layer-2 segment, and a loop would flood it); this one has 1 loop (e.g. 0-1-2-3); use a star, a two-level tree, hierarchical, or a fat tree pruned to a tree
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Hashable
from dataclasses import dataclass, field

import networkx as nx

import topologies

__all__ = [
    "MANAGEMENT_HOSTS",
    "SUBNET",
    "End",
    "Host",
    "Link",
    "Plan",
    "TestbedError",
    "address",
    "check_name",
    "make_plan",
]

#: The testbed's addresses: private, and only inside its own namespaces.
SUBNET = "10.77.0.0/16"
#: The most hosts a testbed's management network (one /24) has addresses for.
MANAGEMENT_HOSTS = 253
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class TestbedError(RuntimeError):
    """A testbed that cannot be made, used or removed; the message says how to fix it."""

    __test__ = False  # pytest: an exception, not a test class


def check_name(name: str) -> str:
    """A testbed's name: the prefix of all it creates, short enough for interface names.

    Examples
    --------
    >>> check_name("tb1")
    'tb1'
    >>> check_name("My-Bed")
    Traceback (most recent call last):
    ...
    real.testbed.plan.TestbedError: --name 'My-Bed': use 1-8 lower-case letters and digits, starting with a letter (e.g. tb1)
    """
    if not _NAME.match(name):
        raise TestbedError(
            f"--name {name!r}: use 1-8 lower-case letters and digits, starting with a letter "
            "(e.g. tb1)"
        )
    return name


def address(rank: int) -> str:
    """Host ``rank``'s address in :data:`SUBNET`.

    Examples
    --------
    >>> address(0), address(253), address(254)
    ('10.77.0.1', '10.77.0.254', '10.77.1.1')
    """
    if not 0 <= rank < 254 * 255:
        raise TestbedError(f"topology: {rank + 1} hosts are more than a testbed's 64770")
    return f"10.77.{rank // 254}.{rank % 254 + 1}"


@dataclass(frozen=True)
class End:
    """One end of a link: the namespace it lives in, its device, whether a bridge takes it."""

    namespace: str
    device: str
    bridged: bool


@dataclass(frozen=True)
class Link:
    """A topology edge as a veth pair; ``rate`` in bytes/s and ``delay`` in s, each way."""

    index: int
    a: End
    b: End
    rate: float
    delay: float


@dataclass(frozen=True)
class Host:
    """A rank's namespace and address; ``device`` carries the address (``br0`` if bridged)."""

    rank: int
    namespace: str
    address: str
    device: str


@dataclass
class Plan:
    """Everything :func:`real.testbed.lifecycle.up` creates, in order."""

    name: str
    hosts: list[Host]
    switches: list[str]
    links: list[Link]
    #: Namespaces that hold a bridge: every switch's, and hosts with more than one link.
    bridges: list[str] = field(default_factory=list)
    #: Each topology node's namespace, by the node's name as a string (as fault schedules
    #: name links).
    nodes: dict[str, str] = field(default_factory=dict)
    #: The management network's subnet: ``10.78.<management>.0/24`` (see the module notes).
    management: int = 1

    @property
    def namespaces(self) -> list[str]:
        """The topology's namespaces: its hosts' and switches'."""
        return [h.namespace for h in self.hosts] + self.switches

    @property
    def management_namespace(self) -> str:
        """The namespace of the management network's bridge."""
        return f"{self.name}-m"

    @property
    def gateway(self) -> str:
        """The machine's own address on the management network: where the run's store is."""
        return f"10.78.{self.management}.254"

    @property
    def gateway_device(self) -> str:
        """The management veth's end in the machine's own namespace."""
        return f"{self.name}-m"

    def management_address(self, rank: int) -> str:
        """Host ``rank``'s address on the management network (device ``mgmt``)."""
        if not 0 <= rank < MANAGEMENT_HOSTS:
            raise TestbedError(
                f"topology: {len(self.hosts)} hosts are more than a testbed's management "
                f"network has addresses for ({MANAGEMENT_HOSTS})"
            )
        return f"10.78.{self.management}.{rank + 1}"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "hosts": [vars(h) for h in self.hosts],
            "switches": self.switches,
            "links": [
                {
                    "index": link.index,
                    "a": vars(link.a),
                    "b": vars(link.b),
                    "rate": link.rate,
                    "delay": link.delay,
                }
                for link in self.links
            ],
            "bridges": self.bridges,
            "management": self.management,
        }


def _loop(graph: nx.Graph) -> list[Hashable]:
    return [u for u, _ in nx.find_cycle(graph)]


def make_plan(graph: nx.Graph, name: str) -> Plan:
    """The testbed of topology ``graph`` under prefix ``name`` (see the module docstring)."""
    check_name(name)
    topologies.validate(graph)
    undirected = graph.to_undirected() if graph.is_directed() else graph
    if not nx.is_tree(undirected):
        if not nx.is_connected(undirected):
            raise TestbedError("topology: not connected; every host must reach every other")
        loops = undirected.number_of_edges() - undirected.number_of_nodes() + 1
        example = "-".join(str(n) for n in _loop(undirected))
        raise TestbedError(
            "topology: a testbed must be a tree (it is one layer-2 segment, and a loop would "
            f"flood it); this one has {loops} loop{'s' if loops > 1 else ''} (e.g. {example}); "
            "use a star, a two-level tree, hierarchical, or a fat tree pruned to a tree"
        )
    host_nodes = topologies.hosts(undirected)
    switch_nodes = topologies.switches(undirected)
    namespace: dict[Hashable, str] = {}
    for node in host_nodes:
        namespace[node] = f"{name}-h{undirected.nodes[node]['rank']}"
    for index, node in enumerate(switch_nodes):
        namespace[node] = f"{name}-s{index}"
    bridged = {n for n in undirected if n in switch_nodes or undirected.degree(n) > 1}
    links = []
    for index, (u, v, data) in enumerate(undirected.edges(data=True)):
        links.append(
            Link(
                index=index,
                a=End(namespace[u], f"l{index}a", u in bridged),
                b=End(namespace[v], f"l{index}b", v in bridged),
                rate=float(data["bandwidth"]),
                delay=float(data["latency"]),
            )
        )
    hosts = []
    for node in host_nodes:
        rank = undirected.nodes[node]["rank"]
        if node in bridged:
            device = "br0"
        else:
            (link,) = [
                link for link in links if namespace[node] in (link.a.namespace, link.b.namespace)
            ]
            device = link.a.device if link.a.namespace == namespace[node] else link.b.device
        hosts.append(Host(rank, namespace[node], address(rank), device))
    hosts.sort(key=lambda h: h.rank)
    return Plan(
        name=name,
        hosts=hosts,
        switches=[namespace[s] for s in switch_nodes],
        links=links,
        bridges=[namespace[n] for n in undirected if n in bridged],
        nodes={str(node): ns for node, ns in namespace.items()},
        management=zlib.crc32(name.encode()) % 250 + 1,
    )

"""Where this process sits in a real run: rank, world, node and the rendezvous address.

A rank learns it from its launcher's environment, so that the strategy never does:

* ``torchrun`` (and commsim's own local launcher, which sets the same variables): ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK`` (the node),
  ``MASTER_ADDR``, ``MASTER_PORT`` and ``TORCHELASTIC_USE_AGENT_STORE`` (the launcher hosts
  the rendezvous store; ranks only connect to it);
* SLURM's ``srun``: ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_NODEID``,
  ``SLURM_NTASKS_PER_NODE``; the rendezvous host is ``MASTER_ADDR`` when set, else the first
  host of ``SLURM_STEP_NODELIST`` (or ``SLURM_JOB_NODELIST``), where rank 0 runs; the port is
  ``MASTER_PORT``, else 29500.

Examples
--------
>>> p = Placement.from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
...     "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1", "MASTER_ADDR": "n0", "MASTER_PORT": "29400"})
>>> p.rank, p.world_size, p.local_rank, p.node, p.launcher
(3, 8, 1, 1, 'torchrun')
>>> Placement.from_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
...     "SLURM_NODEID": "2", "SLURM_STEP_NODELIST": "gpu[07-10]"}).master_addr
'gpu07'
>>> Placement.from_env({}) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_PORT", "LaunchError", "Placement", "first_host", "placement_record"]

#: The rendezvous port when a SLURM job does not set ``MASTER_PORT`` (torchrun's default).
DEFAULT_PORT = 29500


class LaunchError(ValueError):
    """A launcher's environment that cannot start a run; the message says how to fix it."""


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``node[01-04,07],login`` -> ``node01``).

    Examples
    --------
    >>> first_host("a12"), first_host("gpu[003-004]"), first_host("x[7,9],y")
    ('a12', 'gpu003', 'x7')
    """
    match = re.match(r"\s*([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if match is None or not match.group(1):
        raise LaunchError(
            f"cannot read a host from the SLURM node list {nodelist!r}; export MASTER_ADDR="
            "the first node's host name"
        )
    prefix, ranges = match.group(1), match.group(2)
    if ranges is None:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


#: What the ranks' messages crossed, by launcher: the local launcher's and one node's ranks
#: talk over loopback, whatever the topology's links say; the testbed's over its emulated
#: links; a cluster's over its network.
_LINKS = {"local": "loopback", "testbed": "the testbed's emulated links"}


def placement_record(world_size: int, per_node: int, launcher: str) -> dict[str, Any]:
    """Where a real run ran, for its ``run.json`` (``config.placement``) and its summary:
    nodes x processes per node, the launcher (``local``, ``torchrun``, ``slurm``,
    ``testbed``) and the links its messages crossed.

    Examples
    --------
    >>> placement_record(4, 4, "local")
    {'nodes': 1, 'processes_per_node': 4, 'launcher': 'local', 'links': 'loopback'}
    >>> placement_record(16, 8, "torchrun")["links"], placement_record(3, 1, "testbed")["nodes"]
    ("the cluster's network", 3)
    """
    nodes = -(-world_size // max(per_node, 1))
    links = _LINKS.get(launcher, "loopback" if nodes == 1 else "the cluster's network")
    return {"nodes": nodes, "processes_per_node": per_node, "launcher": launcher, "links": links}


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None or value == "":
        if default is None:
            raise LaunchError(f"the launcher did not set {name}; run under torchrun or srun")
        return default
    try:
        return int(value.split("(")[0])  # SLURM writes counts like "4(x2)"
    except ValueError:
        raise LaunchError(f"{name}={value!r} is not an integer") from None


@dataclass(frozen=True)
class Placement:
    """One rank's place in the run, as its launcher described it."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node: int
    master_addr: str
    master_port: int
    #: The launcher hosts the rendezvous store (torchrun's agent, commsim's local launcher):
    #: rank 0 connects to it like every other rank instead of hosting it.
    agent_store: bool
    launcher: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Placement | None:
        """The placement the environment describes; ``None`` outside any launcher."""
        if "RANK" in env and "WORLD_SIZE" in env:
            placement = cls(
                rank=_int(env, "RANK"),
                world_size=_int(env, "WORLD_SIZE"),
                local_rank=_int(env, "LOCAL_RANK", 0),
                local_world_size=_int(env, "LOCAL_WORLD_SIZE", 1),
                node=_int(env, "GROUP_RANK", 0),
                master_addr=env.get("MASTER_ADDR") or "127.0.0.1",
                master_port=_int(env, "MASTER_PORT", DEFAULT_PORT),
                agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
                launcher=env.get("COMMSIM_LAUNCHER", "torchrun"),
            )
        elif "SLURM_PROCID" in env:
            nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
            addr = env.get("MASTER_ADDR") or (first_host(nodelist) if nodelist else "")
            if not addr:
                raise LaunchError(
                    "srun set no SLURM_STEP_NODELIST; export MASTER_ADDR=the first node's host "
                    "name (and MASTER_PORT) before srun"
                )
            placement = cls(
                rank=_int(env, "SLURM_PROCID"),
                world_size=_int(env, "SLURM_NTASKS"),
                local_rank=_int(env, "SLURM_LOCALID", 0),
                local_world_size=_int(env, "SLURM_NTASKS_PER_NODE", 1),
                node=_int(env, "SLURM_NODEID", 0),
                master_addr=addr,
                master_port=_int(env, "MASTER_PORT", DEFAULT_PORT),
                agent_store=False,
                launcher="slurm",
            )
        else:
            return None
        if not 0 <= placement.rank < placement.world_size:
            raise LaunchError(
                f"rank {placement.rank} is outside a world of {placement.world_size} ranks; "
                "the launcher's RANK and WORLD_SIZE disagree"
            )
        if not 0 < placement.master_port < 2**16:
            raise LaunchError(f"MASTER_PORT={placement.master_port} must be in 1..65535")
        return placement

    def env(self) -> dict[str, str]:
        """The torchrun-style variables that describe this placement (what the local
        launcher gives each rank).

        Examples
        --------
        >>> p = Placement(1, 2, 1, 2, 0, "127.0.0.1", 1234, True, "local")
        >>> Placement.from_env(p.env()) == p
        True
        """
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "GROUP_RANK": str(self.node),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "TORCHELASTIC_USE_AGENT_STORE": str(self.agent_store),
            "COMMSIM_LAUNCHER": self.launcher,
        }

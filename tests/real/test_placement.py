"""A rank's place in the run comes from its launcher's environment: torchrun's variables,
srun's, or none (then the local launcher starts the processes)."""

import pytest

from real.placement import DEFAULT_PORT, LaunchError, Placement, first_host

TORCHRUN = {
    "RANK": "5",
    "WORLD_SIZE": "8",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "4",
    "GROUP_RANK": "1",
    "MASTER_ADDR": "node0",
    "MASTER_PORT": "29400",
    "TORCHELASTIC_USE_AGENT_STORE": "True",
}

SLURM = {
    "SLURM_PROCID": "6",
    "SLURM_NTASKS": "8",
    "SLURM_LOCALID": "2",
    "SLURM_NODEID": "1",
    "SLURM_NTASKS_PER_NODE": "4(x2)",
    "SLURM_STEP_NODELIST": "gpu[017-018]",
}


def test_torchrun_variables_give_rank_node_and_an_agent_hosted_store():
    p = Placement.from_env(TORCHRUN)
    assert (p.rank, p.world_size, p.local_rank, p.local_world_size, p.node) == (5, 8, 1, 4, 1)
    assert (p.master_addr, p.master_port, p.agent_store, p.launcher) == (
        "node0",
        29400,
        True,
        "torchrun",
    )


def test_srun_variables_put_the_store_on_the_first_node_where_rank_0_runs():
    p = Placement.from_env(SLURM)
    assert (p.rank, p.world_size, p.local_rank, p.local_world_size, p.node) == (6, 8, 2, 4, 1)
    assert (p.master_addr, p.master_port, p.agent_store, p.launcher) == (
        "gpu017",
        DEFAULT_PORT,
        False,
        "slurm",
    )
    assert (
        Placement.from_env({**SLURM, "MASTER_ADDR": "h", "MASTER_PORT": "1234"}).master_port == 1234
    )


@pytest.mark.parametrize(
    "nodelist,host",
    [("a", "a"), ("n[1-4]", "n1"), ("n[07,09-10],m2", "n07"), ("rack1-n[003-004]", "rack1-n003")],
)
def test_first_host_of_a_slurm_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_no_launcher_means_no_placement():
    assert Placement.from_env({"PATH": "/bin"}) is None


@pytest.mark.parametrize(
    "env,match",
    [
        ({"RANK": "4", "WORLD_SIZE": "4"}, "rank 4 is outside a world of 4"),
        ({"RANK": "x", "WORLD_SIZE": "4"}, "RANK='x' is not an integer"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "70000"}, "MASTER_PORT=70000"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, "export MASTER_ADDR"),
    ],
)
def test_a_broken_launcher_environment_is_one_line_naming_the_variable(env, match):
    with pytest.raises(LaunchError, match=match) as err:
        Placement.from_env(env)
    assert "\n" not in str(err.value)

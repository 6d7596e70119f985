import matplotlib

matplotlib.use("Agg")

import networkx as nx  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import topologies  # noqa: E402
from topologies import draw, layout  # noqa: E402

FAMILIES = {
    "ring": lambda: topologies.ring(6),
    "star": lambda: topologies.star(5),
    "fully_connected": lambda: topologies.fully_connected(5),
    "torus2d": lambda: topologies.torus2d(3, 4),
    "fat_tree": lambda: topologies.fat_tree(4),
    "hierarchical": lambda: topologies.hierarchical(3, 4),
    "random_regular": lambda: topologies.random_regular(10, 3),
    "custom": lambda: topologies.from_graph(nx.DiGraph([(0, 1), (1, 2), (2, 0), (1, 0)])),
    "big": lambda: topologies.fat_tree(8),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_draw_every_family(tmp_path, name):
    g = FAMILIES[name]()
    values = {e: float(i) for i, e in enumerate(g.edges)}
    fig = draw(g, edge_values=values)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # drawing + colour bar
    fig.savefig(tmp_path / "out.png", dpi=40)
    assert (tmp_path / "out.png").stat().st_size > 0


def test_hosts_and_switches_look_different():
    fig = draw(topologies.star(4))
    (ax,) = fig.axes
    markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(markers) == 2
    host_colour, switch_colour = (tuple(c.get_facecolor()[0]) for c in markers)
    assert host_colour != switch_colour
    assert markers[0].get_paths()[0] != markers[1].get_paths()[0]
    assert ax.get_title() == "star: 4 hosts"


def test_draw_on_given_axes_and_partial_values():
    fig = Figure()
    ax = fig.add_subplot()
    g = topologies.ring(4)
    assert draw(g, ax=ax, edge_values={(1, 0): 3.0}, title="mine") is fig
    assert ax.get_title() == "mine"


def test_layouts():
    ring = layout(topologies.ring(4))
    assert ring[0] == pytest.approx((0.0, 1.0))
    assert layout(topologies.star(3))["s0"] == (0.0, 0.0)
    tree = layout(topologies.fat_tree(4))
    assert {tree[h][1] for h in range(16)} == {0.0}
    assert tree["edge0_0"][1] == 1.0 and tree["agg0_0"][1] == 2.0 and tree["core0"][1] == 3.0
    assert tree[0][0] < tree[15][0]  # hosts left to right by rank
    spring = layout(topologies.random_regular(8, 3))
    assert spring == layout(topologies.random_regular(8, 3))  # fixed seed


def test_draw_validates():
    with pytest.raises(topologies.TopologyError):
        draw(nx.path_graph(2))

"""What a simulated run directory says about the network: links.parquet, topology.json, and
the links' utilisation on the timeline."""

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import topologies
from runs import LINKS_FILE, METRICS_FILE, RUN_FILE, TOPOLOGY_FILE, TRACE_FILE
from sim import run

COLUMNS = ["src", "dst", "bandwidth", "latency", "bytes", "busy_time", "utilisation"]


def test_two_hosts_all_reducing_carry_the_ring_formulas_bytes_each_way(tmp_path):
    bandwidth, steps = 1e9, 5
    graph = topologies.ring(2, bandwidth=bandwidth, latency=1e-6)
    result = run("allreduce", "quadratic", graph, steps=steps, out=tmp_path)
    links = pd.read_parquet(tmp_path / LINKS_FILE)
    assert list(links.columns) == COLUMNS
    assert sorted(zip(links["src"], links["dst"])) == [("0", "1"), ("1", "0")]
    # A ring all-reduce of N bytes over p ranks sends 2 (p - 1) / p N from each rank.
    p, n = 2, result.parameters.numel() * 4
    expected = steps * 2 * (p - 1) / p * n
    np.testing.assert_allclose(links["bytes"], expected, rtol=1e-9)
    assert links["bytes"].sum() == pytest.approx(result.summary["bytes"], rel=1e-9)
    assert (links["bandwidth"] == bandwidth).all() and (links["latency"] == 1e-6).all()
    np.testing.assert_allclose(
        links["utilisation"], links["bytes"] / (bandwidth * result.summary["time"]), rtol=1e-9
    )
    assert (links["busy_time"] <= result.summary["time"]).all()


def test_through_a_switch_every_byte_crosses_two_links(tmp_path):
    # An all-reduce run ends after its last all-reduce has delivered: nothing is in flight.
    result = run("allreduce", "quadratic", topologies.star(4), steps=4, out=tmp_path)
    links = pd.read_parquet(tmp_path / LINKS_FILE)
    assert len(links) == 2 * topologies.star(4).number_of_edges()
    assert links["bytes"].sum() == pytest.approx(2 * result.summary["bytes"], rel=1e-9)


def test_bytes_still_in_flight_when_the_run_stops_are_not_counted_on_links(tmp_path):
    # Parameter servers stop on their step while the last replies are on their way.
    result = run("parameter_server", "quadratic", topologies.star(4), steps=4, out=tmp_path)
    links = pd.read_parquet(tmp_path / LINKS_FILE)
    assert 0 < links["bytes"].sum() <= 2 * result.summary["bytes"]


def test_topology_json_round_trips_and_every_file_is_there(tmp_path):
    graph = topologies.hierarchical(2, 2)  # hosts with nodes, switches with names
    run("allreduce", "quadratic", graph, steps=2, out=tmp_path)
    loaded = topologies.io.load(tmp_path / TOPOLOGY_FILE)
    assert nx.utils.graphs_equal(loaded, graph) and loaded.graph == graph.graph
    names = {RUN_FILE, METRICS_FILE, TRACE_FILE, LINKS_FILE, TOPOLOGY_FILE}
    assert names <= {p.name for p in tmp_path.iterdir()}


def test_link_counters_average_to_each_links_utilisation_over_the_run(tmp_path):
    result = run("allreduce", "quadratic", topologies.star(3), steps=6, out=tmp_path)
    links = pd.read_parquet(tmp_path / LINKS_FILE).set_index(["src", "dst"])
    counters = [e for e in result.trace.document()["traceEvents"] if e["ph"] == "C"]
    assert {e["name"] for e in counters} >= {"loss", "link utilisation"}
    overall = [e for e in counters if e["name"] == "link utilisation"]
    assert len(overall) == 201 and overall[-1]["args"] == {"max": 0.0, "mean": 0.0}
    assert all(0 <= e["args"]["mean"] <= e["args"]["max"] <= 1 + 1e-9 for e in overall)
    per_link = sorted({e["name"] for e in counters if "→" in e["name"]})
    assert 1 <= len(per_link) <= 4
    end = result.summary["time"]
    for name in per_link:
        samples = [e for e in counters if e["name"] == name]
        assert samples[0]["ts"] == 0.0 and samples[-1]["ts"] == pytest.approx(end * 1e6)
        # Equal windows: their mean is the link's utilisation over the whole run.
        series = [e["args"]["utilisation"] for e in samples[:-1]]
        src, dst = name.removeprefix("link ").split("→")
        assert np.mean(series) == pytest.approx(links.loc[(src, dst), "utilisation"], rel=1e-6)
    busiest = links["bytes"].nlargest(len(per_link))
    assert sorted(f"link {u}→{v}" for u, v in busiest.index) == per_link

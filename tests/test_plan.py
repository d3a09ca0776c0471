"""Sizes are checked before any job runs: the plan of a compile, its refusals (one line
that names the value, in about a second), --force, and --dry-run."""

from __future__ import annotations

import re
import tracemalloc

import pytest
import yaml

from neuroscaffold import Configuration, ConfigurationError, Network, plan as plan_module
from neuroscaffold.cli import main
from neuroscaffold.plan import MAX_CHUNKS, build_plan
from tests._mpi import ROOT, run_script
from tests.config._models import two_layers

CEREBELLUM = ROOT / "examples" / "cerebellum.yaml"


def cerebellum() -> dict:
    return yaml.safe_load(CEREBELLUM.read_text())


def _set(data: dict, path: str, value) -> dict:
    *parents, key = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[key] = value
    return data


REFUSALS = [
    # (path, value, the message, whether --force lets it through)
    ("cell_types.stellate.density", 1e3,
     r"placement\.molecular: 29,600,000,888 cells \(cell_types\.stellate\.density: 1000 "
     r"cells/µm³\) would need about [0-9.]+ GiB of memory per rank, more than the [0-9.]+ "
     r"[GMT]iB available \(if you are sure, compile with --force or compile\(force=True\)\)", True),
    ("network.chunk_size", 0.5,
     r"network\.chunk_size: \[0\.5, 0\.5, 0\.5\] µm makes 448,000,000 chunks of 0\.5 x 0\.5 x "
     r"0\.5 µm in a 400 x 350 x 400 µm network; at most 10,000,000 are allowed \(use larger "
     r"chunks or a smaller network\)", False),
    ("partitions.molecular_layer.thickness", 1e9,
     r"partitions\.molecular_layer: layer from y=165 to y=1e\+09 µm runs past the network, "
     r"which spans y=0 to 350 µm \(network\.y\)", False),
    ("network.x", 1e300,
     r"network\.x: 1e\+300 µm makes 1\.6e\+299 chunks of 100 x 100 x 100 µm in a 1e\+300 x "
     r"350 x 400 µm network; at most 10,000,000 are allowed .*", False),
    ("partitions.molecular_layer.origin", 100000,
     r"partitions\.molecular_layer: layer from y=100000 to y=100185 µm lies outside the "
     r"network, which spans y=0 to 350 µm \(network\.y\)", False),
    ("partitions.purkinje_layer.origin", 340,
     r"partitions\.purkinje_layer: layer from y=340 to y=355 µm runs past the network, which "
     r"spans y=0 to 350 µm \(network\.y\)", False),
]


@pytest.mark.parametrize("path, value, message, forcible", REFUSALS,
                         ids=[r[0].rsplit(".", 1)[-1] for r in REFUSALS])
def test_absurd_models_are_refused_up_front_with_one_line(capsys, tmp_path, path, value,
                                                             message, forcible):
    config = tmp_path / "net.yaml"
    config.write_text(yaml.safe_dump(_set(cerebellum(), path, value)))
    out_file = tmp_path / "out.hdf5"
    code = main(["compile", str(config), "-o", str(out_file), "-q"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert re.fullmatch(f"neuroscaffold: error: {message}\n", err), err
    assert not out_file.exists()  # refused before anything was written
    if not forcible:  # --force never overrides geometry errors
        assert main(["compile", str(config), "-o", str(out_file), "-q", "--force"]) == 1
        assert capsys.readouterr().err == err


def test_force_overrides_the_estimates(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_module, "MAX_JOBS", 10)  # two_layers runs 24 jobs
    network = Network(Configuration(two_layers()), tmp_path / "n.hdf5")
    with pytest.raises(ConfigurationError, match=r"^the compile would run 24 jobs "
                       r"\(placement\.place_a: 4\), more than 10; use a larger "
                       r"network\.chunk_size \(if you are sure, compile with --force"):
        network.compile(quiet=True)
    assert not (tmp_path / "n.hdf5").exists()
    network.compile(quiet=True, force=True)
    assert len(network.get_placement_set("a")) == 400


def test_the_plan_counts_jobs_chunks_and_cells_of_the_example():
    plan = build_plan(Configuration(cerebellum()))
    assert plan.chunks == 64 and plan.jobs == 96 + 144
    by_name = {s.name: s for s in plan.strategies}
    assert (by_name["granular"].jobs, by_name["granular"].chunks) == (32, 32)
    assert plan.cells == {"granule": 93_600, "golgi": 216, "purkinje": 100, "stellate": 1_480,
                          "basket": 888}
    assert 800_000 < plan.connections < 2_000_000  # compiles ~1.05 million
    assert plan.geometry_errors == [] and plan.estimate_errors == []
    plan.check()


def test_plan_of_a_huge_grid_is_counted_not_enumerated():
    data = _set(cerebellum(), "network.chunk_size", 4)  # 880,000 chunks
    configuration = Configuration(data)
    # Counted, not enumerated: a Python object per chunk would take tens of MB (the
    # plan takes about 2 MB at its peak); a memory bound, not a wall-clock one.
    tracemalloc.start()
    try:
        plan = build_plan(configuration)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"the plan of 880,000 chunks peaked at {peak / 1e6:.0f} MB"
    assert plan.chunks == 880_000 and plan.chunks < MAX_CHUNKS
    with pytest.raises(ConfigurationError, match=r"^the compile would run [0-9,]+ jobs"):
        plan.check()


def test_fixed_positions_outside_the_network_are_refused():
    data = two_layers()
    data["placement"]["place_c"] = {"strategy": "fixed", "cell_types": ["c"],
                                    "positions": [[1, 2, 3], [10, 250, 3]]}
    with pytest.raises(ConfigurationError, match=re.escape(
            "placement.place_c.positions: 1 of 2 positions lie outside the network (0 to "
            "200, 200, 200 µm); the first is row 1: [10, 250, 3]")):
        build_plan(Configuration(data)).check(force=True)


def test_dry_run_prints_the_plan_and_writes_nothing(capsys, tmp_path):
    out_file = tmp_path / "c.hdf5"
    assert main(["compile", str(CEREBELLUM), "-o", str(out_file), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and not out_file.exists()
    lines = out.splitlines()
    assert lines[0] == "plan of 'cerebellum': 400 x 350 x 400 µm, 64 chunks of 100 x 100 x 100 µm"
    assert lines[1] == "placement: 3 strategies, 96 jobs"
    assert re.fullmatch(r"  granular +poisson_disk +32 jobs +32 chunks  cells: granule 93,600, "
                        r"golgi 216", lines[2])
    assert lines[5] == "connectivity: 6 strategies, 144 jobs"
    assert re.fullmatch(r"  golgi_gap_junctions +all_to_all +32 jobs +32 chunks  ~46,440 "
                        r"connections", lines[11])
    assert lines[12] == ("expected cells: granule 93,600, golgi 216, purkinje 100, stellate "
                         "1,480, basket 888; total 96,284")
    assert re.fullmatch(r"estimates: memory ~[0-9.]+ MiB per rank \([0-9.]+ [GMT]iB available.*\), "
                        r"file ~[0-9.]+ MiB \([0-9.]+ [GMT]iB free\), ~[0-9,]+ connections", lines[13])
    assert lines[14] == f"dry run: nothing was written ({out_file} untouched)"


def test_dry_run_shows_a_geometry_error_and_fails(capsys, tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text(yaml.safe_dump(_set(cerebellum(), "partitions.molecular_layer.origin", 300)))
    assert main(["compile", str(config), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "error: partitions.molecular_layer: layer from y=300 to y=485 µm runs past" in out


CLI = "import sys; from neuroscaffold.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.mpi
def test_under_mpiexec_a_refusal_is_one_line_once(tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text(yaml.safe_dump(_set(cerebellum(), "cell_types.stellate.density", 1e3)))
    result = run_script(CLI, n=2, timeout=60, tmp_path=tmp_path,
                        args=["compile", str(config), "-o", str(tmp_path / "o.hdf5")])
    assert result.returncode == 1, result.describe()
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.describe()
    assert errors[0].startswith("neuroscaffold: error: placement.molecular: 29,600,000,888 cells "
                                "(cell_types.stellate.density: 1000 cells/µm³)")
    assert not (tmp_path / "o.hdf5").exists()


def test_a_strategy_the_plan_cannot_estimate_is_shown_as_unknown():
    from neuroscaffold.placement import Layer

    class Weird(Layer):
        def overlap(self, chunk):
            raise NotImplementedError("no volume")

    data = two_layers()
    configuration = Configuration(data)
    weird = Weird(thickness=100)
    configuration.partitions["bottom"] = weird
    plan = build_plan(configuration)
    assert plan.cells["a"] is None and plan.cells["b"] == 90
    assert "cells: a ?" in plan.format()
    plan.check()


def test_yaml_uses_the_c_loader_when_installed():
    import yaml

    from neuroscaffold.config import _parse

    if getattr(yaml, "__with_libyaml__", False):
        assert _parse._Loader is yaml.CSafeLoader
    else:
        assert _parse._Loader is yaml.SafeLoader


def test_the_plan_lists_strategies_in_scheduling_order():
    data = two_layers()
    # place_b depends on place_a; list it first in the file
    data["placement"] = {"place_b": data["placement"]["place_b"],
                         "place_c": data["placement"]["place_c"],
                         "place_a": data["placement"]["place_a"]}
    plan = build_plan(Configuration(data))
    names = [s.name for s in plan.strategies]
    assert names[:3] == ["place_a", "place_b", "place_c"]
    assert names[3:] == ["a_to_b", "a_to_a", "c_to_b"]


def test_dry_run_of_a_model_refused_by_estimates_fails_unless_forced(capsys, tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text(yaml.safe_dump(_set(cerebellum(), "cell_types.stellate.density", 1e3)))
    assert main(["compile", str(config), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "refused unless forced: placement.molecular: 29,600,000,888 cells" in out
    assert "stellate 29,600,000,000, basket 888" in out
    assert main(["compile", str(config), "--dry-run", "--force"]) == 0


def _stored_counts(data: dict, tmp_path) -> dict[str, int]:
    network = Network(Configuration(data), str(tmp_path / "net.hdf5"))
    network.compile(clear=True)
    return {name: network.storage.connectivity_meta(name)[0] for name in data["connectivity"]}


@pytest.mark.parametrize("factor", [1, 2])
def test_built_in_estimates_follow_the_geometry_within_a_fifth(tmp_path, factor):
    # the estimates count the partners a cell near a border or a layer edge really has
    # (the former ball-times-density estimate said 1,565,755 for 1,047,292 stored)
    data = cerebellum()
    data["network"]["x"] *= factor
    plan = build_plan(Configuration(data))
    stored = _stored_counts(data, tmp_path)
    for strategy in plan.strategies:
        if strategy.phase == "connectivity":
            assert strategy.connections == pytest.approx(stored[strategy.name], rel=0.2), strategy.name
    assert plan.connections == pytest.approx(sum(stored.values()), rel=0.05)


def test_memory_estimate_counts_the_process_not_only_the_data():
    plan = build_plan(Configuration(cerebellum()))
    # a serial compile of the example peaks at about 86 MB (bench/bench_compile.py)
    assert 70e6 < plan.rank_memory < 110e6


USER_HOOK = '''
from neuroscaffold import ConnectionStrategy, PlacementStrategy, config


@config.node
class Ring(PlacementStrategy):
    """Places nothing the plan could guess from a density, but says how many."""

    def estimate_cells(self, chunk):
        return {ct.name: 1e12 for ct in self.cell_types}

    def place(self, chunk, indicators):
        pass


@config.node
class Dense(ConnectionStrategy):
    def estimate_connections(self, chunk, cells):
        return cells.in_chunk(self.postsynaptic.name, chunk) * 1e9

    def connect(self, pre, post):
        return ()
'''


def test_a_user_strategy_hook_feeds_the_plan_and_the_guard(tmp_path, monkeypatch):
    (tmp_path / "hooks.py").write_text(USER_HOOK)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = two_layers()
    data["placement"] = {"ring": {"strategy": "hooks.Ring", "cell_types": ["a"],
                                  "partitions": list(data["partitions"])[:1]}}
    data["connectivity"] = {"dense": {"strategy": "hooks.Dense", "presynaptic": "a",
                                      "postsynaptic": "a"}}
    data["cell_types"] = {"a": data["cell_types"][next(iter(data["cell_types"]))]}
    plan = build_plan(Configuration(data))
    ring, dense = plan.strategies
    assert ring.cells["a"] == pytest.approx(1e12 * ring.jobs)
    assert dense.connections == pytest.approx(1e21 * dense.jobs)
    with pytest.raises(ConfigurationError, match=r"^placement\.ring: 4,000,000,000,000 cells would "
                                                 r"need about .* of memory per rank"):
        plan.check()
    assert f"~{1e21 * dense.jobs:.3g} connections" in plan.format()

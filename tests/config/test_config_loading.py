"""Configuration: loading from YAML/JSON, node names, references, and every error."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from neuroscaffold import Configuration, ConfigurationError, Network, config
from neuroscaffold.config import types, walk_nodes
from neuroscaffold.placement import Layer, RandomPlacement
from tests.config._models import two_layers


def load(data: dict) -> Configuration:
    return Configuration(data)


def test_yaml_and_json_files_give_the_same_configuration(tmp_path):
    data = two_layers()
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "net.json").write_text(json.dumps(data))
    from_yaml = Configuration.from_file(tmp_path / "net.yaml")
    from_json = Configuration.from_file(tmp_path / "net.json")
    assert from_yaml.to_dict() == from_json.to_dict()
    assert Configuration.from_yaml(from_yaml.to_yaml()).to_dict() == from_yaml.to_dict()
    assert Configuration.from_json(from_yaml.to_json()).to_dict() == from_yaml.to_dict()


def test_values_are_typed_and_defaults_filled():
    cfg = load(two_layers())
    assert cfg.network.chunk_size == [100.0, 100.0, 100.0]
    assert isinstance(cfg.placement["place_a"], RandomPlacement)
    assert isinstance(cfg.partitions["top"], Layer)
    assert cfg.partitions["top"].axis == "y"
    assert [ct.name for ct in cfg.placement["place_b"].cell_types] == ["b"]
    assert cfg.placement["place_b"].depends_on == [cfg.placement["place_a"]]
    assert cfg.connectivity["a_to_b"].presynaptic is cfg.cell_types["a"]
    assert Configuration.default().to_dict()["network"] == {
        "x": 100.0, "y": 100.0, "z": 100.0, "chunk_size": [100.0, 100.0, 100.0]}


def test_nodes_know_their_name_and_network(tmp_path):
    cfg = load(two_layers())
    strategy = cfg.placement["place_a"]
    assert strategy.get_node_name() == "{root}.placement.place_a"
    assert cfg.partitions["top"].get_node_name() == "{root}.partitions.top"
    assert cfg.network.get_node_name() == "{root}.network"
    assert strategy.scaffold is None
    network = Network(cfg, tmp_path / "net.hdf5")
    assert strategy.scaffold is network
    for node in walk_nodes(cfg):
        assert network.resolve_node(node.get_node_name()) is node
    with pytest.raises(KeyError):
        network.resolve_node("{root}.placement.nope")


def test_a_configuration_already_in_a_network_is_copied_for_another(tmp_path):
    cfg = load(two_layers())
    first = Network(cfg, tmp_path / "one.hdf5")
    second = Network(cfg, tmp_path / "two.hdf5")
    assert first.configuration is cfg
    assert second.configuration is not cfg
    assert second.placement["place_a"].scaffold is second
    assert second.configuration.to_dict() == cfg.to_dict()


def _set(path: str, value):
    def change(data):
        *parents, key = path.split(".")
        target = data
        for part in parents:
            target = target[part]
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return change


_DELETE = object()

ERRORS = [
    (_set("placement.place_a.density", "abc"),
     "placement.place_a.density: expected a number, got 'abc'"),
    (_set("placement.place_a.density", -1),
     "placement.place_a.density: expected a number >= 0, got -1"),
    (_set("placement.place_a.densty", 3),
     "placement.place_a: unknown key 'densty' (did you mean 'density'?)"),
    (_set("plcement", {}), "unknown key 'plcement' (did you mean 'placement'?)"),
    (_set("placement.place_a.cell_types", ["granul"]),
     "placement.place_a.cell_types: reference to missing node 'cell_types.granul'"),
    (_set("connectivity.a_to_b.postsynaptic", "nope"),
     "connectivity.a_to_b.postsynaptic: reference to missing node 'cell_types.nope'"),
    (_set("placement.place_b.depends_on", ["place_x"]),
     "placement.place_b.depends_on: reference to missing node 'placement.place_x'"),
    (_set("placement.place_a.strategy", _DELETE),
     "placement.place_a: missing required key 'strategy'"),
    (_set("placement.place_a.cell_types", _DELETE),
     "placement.place_a: missing required key 'cell_types'"),
    (_set("placement.place_a.partitions", []),
     "placement.place_a: missing required key 'partitions'"),
    (_set("placement.place_a.strategy", "foo"),
     "placement.place_a.strategy: unknown PlacementStrategy 'foo' (built-ins: fixed, "
     "lattice, poisson_disk, random; or an import path such as 'mypackage.module.MyClass')"),
    (_set("placement.place_a.strategy", "mypackage.module.MyStrategy"),
     "placement.place_a.strategy: cannot import 'mypackage.module.MyStrategy': "
     "no module named 'mypackage' (looked on sys.path; a configuration loaded from a "
     "file also looks in its folder)"),
    (_set("placement.place_a.strategy", "json.Nope"),
     "placement.place_a.strategy: cannot import 'json.Nope': 'json' has no attribute 'Nope'"),
    (_set("placement.place_a.strategy", "neuroscaffold.placement.Layer"),
     "placement.place_a.strategy: 'neuroscaffold.placement.Layer' is not a PlacementStrategy"),
    (_set("partitions.top.type", "cube"),
     "partitions.top.type: unknown Partition 'cube' (built-ins: box, layer; or an import "
     "path such as 'mypackage.module.MyClass')"),
    (_set("partitions.top.thickness", 0), "partitions.top.thickness: expected a number > 0, got 0"),
    (_set("partitions.top.axis", "w"), "partitions.top.axis: expected one of 'x', 'y', 'z', got 'w'"),
    (_set("network.chunk_size", [1, 2]),
     "network.chunk_size: expected a number > 0 or a list of 3 numbers > 0, got [1, 2]"),
    (_set("seed", 1.5), "seed: expected an integer, got 1.5"),
    (_set("seed", -1), "seed: expected an integer >= 0, got -1"),
    (_set("name", 5), "name: expected a string, got 5"),
    (_set("connectivity.a_to_a.autapses", "yes"),
     "connectivity.a_to_a.autapses: expected true or false, got 'yes'"),
    (_set("placement.place_c.spacing", [1, 2]),
     "placement.place_c.spacing: expected a list of 3 numbers > 0, got [1, 2]"),
    (_set("placement.place_a.depends_on", ["place_b"]),
     "placement: circular depends_on: place_a -> place_b -> place_a"),
    (_set("cell_types.b.density", 1e-3), "cell_types.b: give 'density' or 'count', not both"),
    (_set("cell_types.a.density", _DELETE),
     "placement.place_a: cell type 'a' needs a density or a count to be placed"),
    (_set("placement.x", 5), "placement.x: expected a mapping, got 5"),
    (_set("placement.bad", {}), "placement.bad: missing required key 'strategy'"),
]


@pytest.mark.parametrize("change, message", ERRORS, ids=[m.split(":")[0] for _, m in ERRORS])
def test_a_bad_value_is_reported_with_its_path(change, message):
    data = two_layers()
    change(data)
    with pytest.raises(ConfigurationError, match=f"^{re.escape(message)}$"):
        load(data)


NAMES = [
    ("cell_types", "a.b", "'a.b': a name may not contain '.'"),
    ("cell_types", ".", "'.': a name may not contain '.'"),
    ("cell_types", "a/b", "'a/b': a name may not contain '/'"),
    ("cell_types", "/", "'/': a name may not contain '/'"),
    ("connectivity", "to/b", "'to/b': a name may not contain '/'"),
    ("cell_types", "", "'': a name is a non-empty string"),
    ("cell_types", "a\x00b", "'a\\x00b': a name may not contain control characters"),
    ("cell_types", "line\nbreak", "'line\\nbreak': a name may not contain control "
                                  "characters"),
    ("partitions", "x" * 256, f"'{'x' * 27}...{'x' * 28}': "
                              "a name has at most 255 characters, not 256"),
]


@pytest.mark.parametrize("section, name, message", NAMES,
                         ids=["dot", "dot-alone", "slash", "slash-alone", "set-slash", "empty",
                              "nul", "newline", "long"])
def test_names_that_are_no_file_group_are_refused(section, name, message):
    data = two_layers()
    if section == "connectivity":
        data["connectivity"] = {name: {"strategy": "all_to_all", "presynaptic": "a",
                                       "postsynaptic": "a"}}
    else:
        data[section][name] = {"type": "layer", "thickness": 1} if section == "partitions" \
            else {}
    with pytest.raises(ConfigurationError,
                       match=f"^{re.escape(section)}: invalid name {re.escape(message)}$"):
        load(data)


def test_a_name_of_any_other_characters_reads_back(tmp_path):
    """Spaces, unicode, backslashes and 255 characters are names a network file keeps."""
    from neuroscaffold import Network, from_storage

    names = ["granule cell", "Purkinje-ß\\1", "y" * 255, " spaced "]
    data = two_layers()
    data["cell_types"] = {name: {"count": 3} for name in names}
    data["placement"] = {"all": {"strategy": "random", "cell_types": names,
                                 "partitions": ["bottom"]}}
    data["connectivity"] = {"to " + names[1]: {"strategy": "all_to_all",
                                               "presynaptic": names[0],
                                               "postsynaptic": names[1]}}
    Network(load(data), tmp_path / "net.hdf5").compile(quiet=True)
    network = from_storage(tmp_path / "net.hdf5")
    assert sorted(network.storage.cell_type_names()) == sorted(names)
    assert len(network.get_placement_set(names[2]).load_positions()) == 3
    assert len(network.get_connectivity_set("to " + names[1]).load_connections()) == 9


def test_setting_an_attribute_later_is_checked_too():
    cfg = load(two_layers())
    with pytest.raises(ConfigurationError,
                       match=r"^placement\.place_a\.density: expected a number, got 'x'$"):
        cfg.placement["place_a"].density = "x"
    with pytest.raises(ConfigurationError,
                       match=r"^density: expected a number, got 'x'$"):
        RandomPlacement(cell_types=["a"], density="x")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.yaml", "a: [1, 2\n", r"^.*bad\.yaml:2:1: invalid YAML: expected ',' or ']', "
                                   r"but got '<stream end>'$"),
        ("bad.json", '{"a": 1,}', r"^.*bad\.json:1:9: invalid JSON: Expecting property name "
                                  r"enclosed in double quotes$"),
        ("list.yaml", "- 1\n- 2\n", r"^.*list\.yaml: expected a mapping at the top level, "
                                    r"got list$"),
    ],
)
def test_unreadable_files_name_the_file_and_the_problem(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        Configuration.from_file(tmp_path / name)


def test_a_missing_file_is_a_configuration_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError, match=rf"^{re.escape(str(missing))}: no such "
                                                 r"configuration file$"):
        Configuration.from_file(missing)


def test_user_strategies_are_given_by_import_path(tmp_path, monkeypatch):
    package = tmp_path / "mypackage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "module.py").write_text(
        "from neuroscaffold import PlacementStrategy, config\n"
        "@config.node\n"
        "class MyStrategy(PlacementStrategy):\n"
        "    factor = config.attr(type=float, default=2.0)\n"
        "    def place(self, chunk, indicators):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = two_layers()
    data["placement"]["place_a"].update(strategy="mypackage.module.MyStrategy", factor=3)
    cfg = load(data)
    strategy = cfg.placement["place_a"]
    assert type(strategy).__qualname__ == "MyStrategy"
    assert strategy.factor == 3.0
    assert cfg.to_dict()["placement"]["place_a"]["strategy"] == "mypackage.module.MyStrategy"
    assert load(cfg.to_dict()).to_dict() == cfg.to_dict()


@config.node
class Synapse:
    """A plain class made a node: typed attributes, defaults, nested nodes."""

    weight = config.attr(type=float, required=True)
    delays = config.list(type=types.number(min=0))
    tags = config.attr(type=types.list_of(str), default=[])


@config.node
class Receptor:
    synapses = config.dict(type=Synapse)
    chain = config.list(type=Synapse)
    kind = config.attr(type=types.in_(("ampa", "gaba")), default="ampa")


def test_the_node_decorator_makes_plain_classes_nodes():
    receptor = Receptor(synapses={"fast": {"weight": 1, "delays": [0.5, "1e-3"]}},
                        chain=[{"weight": 2}, {"weight": 3}])
    fast = receptor.synapses["fast"]
    assert isinstance(fast, config.Node)
    assert fast.weight == 1.0 and fast.delays == [0.5, 0.001]
    assert receptor.chain[1].get_node_name() == "{Receptor}.chain.1"
    assert fast.get_node_name() == "{Receptor}.synapses.fast"
    first, second = Synapse(weight=1), Synapse(weight=1)
    first.tags.append("x")
    assert second.tags == []  # defaults are copied per node
    assert receptor.to_dict() == {
        "synapses": {"fast": {"weight": 1.0, "delays": [0.5, 0.001], "tags": []}},
        "chain": [{"weight": 2.0, "delays": [], "tags": []},
                  {"weight": 3.0, "delays": [], "tags": []}],
        "kind": "ampa",
    }
    with pytest.raises(ConfigurationError, match=r"^chain\.1: missing required key 'weight'$"):
        Receptor(chain=[{"weight": 2}, {}])
    with pytest.raises(ConfigurationError,
                       match=r"^synapses\.fast\.delays\.1: expected a number >= 0, got -1$"):
        Receptor(synapses={"fast": {"weight": 1, "delays": [1, -1]}})


@pytest.mark.parametrize(
    "caster, value, expected",
    [
        (types.number(), "1e-3", 0.001),
        (types.number(), 3, 3.0),
        (types.integer(), 2.0, 2),
        (types.integer(), "7", 7),
        (types.vector(3), (1, 2, 3), [1.0, 2.0, 3.0]),
    ],
)
def test_casters_accept(caster, value, expected):
    assert caster(value) == expected


@pytest.mark.parametrize(
    "caster, value, expected",
    [
        (types.number(), True, "a number"),
        (types.number(), float("nan"), "a finite number"),
        (types.integer(), 2.5, "an integer"),
        (types.number(min=0, max=1), 2, "a number >= 0 and <= 1"),
        (types.string, 1, "a string"),
        (types.vector(3), "abc", "a list of 3 numbers"),
    ],
)
def test_casters_refuse(caster, value, expected):
    with pytest.raises(types.CastError) as info:
        caster(value)
    assert info.value.expected == expected

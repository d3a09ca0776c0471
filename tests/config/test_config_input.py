"""Input that never ends, is too large, or nests deeply: one line each, within seconds
(every command runs in a subprocess with a timeout, so a hang fails the test)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from neuroscaffold.config._parse import MAX_DEPTH, MAX_FILE_BYTES, load_file, parse_text
from neuroscaffold.exceptions import ConfigurationError
from tests.config._models import two_layers
from tests.storage._crash import run

TIMEOUT = 30


def _neuroscaffold(*args: str):
    return run([sys.executable, "-m", "neuroscaffold", *args], timeout=TIMEOUT)


def _one_line(outcome, expected: str) -> None:
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.returncode == 1 and lines == [f"neuroscaffold: error: {expected}"], \
        outcome.describe()
    assert "Traceback" not in outcome.stdout, outcome.describe()


def _deep_block_mapping(depth: int) -> str:
    return "".join(" " * i + "k:\n" for i in range(depth)) + " " * depth + "k: 1\n"


def _deep_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.timeout(60)
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "net.yaml"
    os.mkfifo(fifo)
    for options in ((), ("--dry-run",)):
        _one_line(_neuroscaffold("compile", str(fifo), "-o", str(tmp_path / "x.hdf5"), *options),
                  f"{fifo}: is a FIFO (named pipe), not a regular file; a configuration is "
                  "read from a file")
    # A network path that is a FIFO is not opened either.
    network = tmp_path / "net.hdf5"
    os.mkfifo(network)
    _one_line(_neuroscaffold("show", str(network)), f"{network}: not a regular file")


@pytest.mark.timeout(60)
def test_a_device_that_never_ends_is_refused():
    _one_line(_neuroscaffold("compile", "/dev/zero", "--dry-run"),
              "/dev/zero: is a character device, not a regular file; a configuration is read "
              "from a file")


@pytest.mark.timeout(60)
def test_a_file_larger_than_the_limit_is_refused_after_reading_the_limit(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing to write
    _one_line(_neuroscaffold("compile", str(big), "--dry-run"),
              f"{big}: larger than 16 MiB, the largest configuration file read")
    with open(big, "r+b") as file:
        file.truncate(MAX_FILE_BYTES)  # at the limit: read (and then found not a mapping)
    with pytest.raises(ConfigurationError, match="invalid YAML|expected a mapping"):
        load_file(big)


DEEP = [
    ("block-mapping-2000.yaml", _deep_block_mapping(2000)),
    ("flow-100000.yaml", "[" * 100_000 + "]" * 100_000),
    ("object-5000.json", _deep_json(5000)),
    ("array-900.json", "[" * 900 + "]" * 900),  # below Python's recursion limit
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name, text", DEEP, ids=[name for name, _ in DEEP])
def test_deep_nesting_is_one_line(tmp_path, name, text):
    path = _write(tmp_path, name, text)
    outcome = _neuroscaffold("compile", str(path), "--dry-run")
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.returncode == 1 and len(lines) == 1, outcome.describe()
    assert re.fullmatch(rf"neuroscaffold: error: {re.escape(str(path))}: .*nested more than "
                        rf"{MAX_DEPTH} levels deep", lines[0]), outcome.describe()


def test_nesting_up_to_the_limit_is_read_and_one_more_level_names_its_path():
    assert parse_text(_deep_json(MAX_DEPTH), "json")
    with pytest.raises(ConfigurationError) as raised:
        parse_text(_deep_json(MAX_DEPTH + 1), "json", source="net.json")
    path = ".".join(["a"] * MAX_DEPTH)  # printed short: its start and its end
    assert str(raised.value) == (f"net.json: {path[:58]}...{path[-59:]}: nested more than "
                                 f"{MAX_DEPTH} levels deep")
    # Shared by an alias, a shallow mapping can be deep where it is used.
    inner = "".join(" " * (2 * i) + "k:\n" for i in range(40)) + " " * 80 + "k: 1\n"
    shared = "base: &b\n" + "".join("  " + line + "\n" for line in inner.splitlines())
    deep_use = shared + "".join(" " * (2 * i) + "n:\n" for i in range(30)) + " " * 60 + "n: *b\n"
    with pytest.raises(ConfigurationError, match=f"nested more than {MAX_DEPTH} levels deep"):
        parse_text(deep_use, "yaml")


@pytest.mark.timeout(60)
def test_a_stored_configuration_nested_deeply_is_one_line_in_show(tmp_path):
    from neuroscaffold.storage._layout import write_stub

    path = tmp_path / "net.hdf5"
    write_stub(path, json.dumps({"name": "x", "deep": json.loads(_deep_json(200))})
               .replace('{"a": 1}', _deep_json(5000)), "net.hdf5.parts")
    _one_line(_neuroscaffold("show", str(path)),
              f"{path}: a damaged network file (its stored configuration is nested too deeply "
              "to read)")


@pytest.mark.timeout(120)
def test_a_huge_name_is_printed_short(tmp_path):
    from tests.storage._crash import compile_cmd

    data = two_layers()
    data["name"] = "n" * 10_000_000
    config = _write(tmp_path, "net.json", json.dumps(data))
    out = tmp_path / "net.hdf5"
    compiled = run(compile_cmd(config, out)[:-1], timeout=120)  # without -q: every line
    assert compiled.returncode == 0, compiled.describe()[:2000]
    assert all(len(line) < 300 for line in compiled.stdout.splitlines()), compiled.stdout[:2000]
    assert compiled.stdout.splitlines()[-1].startswith(f"compiled '{'n' * 38}...{'n' * 39}' "
                                                       f"into {out}")
    shown = _neuroscaffold("show", str(out))
    assert shown.returncode == 0 and len(shown.stdout) < 2000, shown.stdout[:2000]

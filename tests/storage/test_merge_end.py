"""The end of a merge: the new network replaces the old one, then the ranks share out
the removal of the parts and of the network replaced (freeing a large file is file
system work of tens of milliseconds). Nothing is left behind, at any rank count, and
the network replaced is freed, not just unlinked from the path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neuroscaffold import Configuration, Network, from_storage
from neuroscaffold.storage import canonical_contents
from neuroscaffold.storage._merge import _removals
from neuroscaffold.storage._parts import OLD_NETWORK, PartsDir
from tests.config._models import two_layers
from tests.storage._crash import compile_cmd, compile_reference, run


def _files(folder: Path, sizes: dict[str, int]) -> None:
    folder.mkdir()
    for name, size in sizes.items():
        with open(folder / name, "wb") as file:
            file.truncate(size)


def test_removals_are_shared_by_size_and_small_files_go_with_the_folder(tmp_path):
    mb = 1 << 20
    trash = tmp_path / "trash"
    _files(trash, {"old.hdf5": 90 * mb, "a1-r0.data": 45 * mb, "a1-r1.data": 44 * mb,
                   "a1-r2.data": 2 * mb, "a1-r0.journal": 4000, "manifest.json": 100})
    shares = _removals(trash, 2)
    assert [sorted(Path(name).name for name in share) for share in shares] == [
        ["old.hdf5"], ["a1-r0.data", "a1-r1.data", "a1-r2.data"]]
    alone = _removals(trash, 1)
    assert len(alone[0]) == 4  # one rank removes every large file
    assert _removals(trash, 4)[3] == [str(trash / "a1-r2.data")]
    assert _removals(None, 3) == [[], [], []]
    assert _removals(tmp_path / "gone", 2) == [[], []]


def test_keep_aside_links_the_network_and_tolerates_its_absence(tmp_path):
    parts = PartsDir(tmp_path / "net.hdf5.parts")
    parts.create({"mode": "compile"})
    parts.keep_aside(tmp_path / "net.hdf5")  # a new compile: nothing to keep
    assert not (parts.path / OLD_NETWORK).exists()
    (tmp_path / "net.hdf5").write_bytes(b"old")
    parts.keep_aside(tmp_path / "net.hdf5")
    parts.keep_aside(tmp_path / "net.hdf5")  # a second merge attempt: linked again
    assert (parts.path / OLD_NETWORK).read_bytes() == b"old"
    assert os.stat(tmp_path / "net.hdf5").st_nlink == 2


def test_a_recompile_frees_the_network_it_replaces_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "net.hdf5"
    Network(Configuration(two_layers()), path).compile(quiet=True)
    reference = canonical_contents(path)
    with open(path, "rb") as old:
        Network(Configuration(two_layers()), path).compile(clear=True, quiet=True)
        assert os.fstat(old.fileno()).st_nlink == 0  # no name left: freed when closed
    assert sorted(os.listdir(tmp_path)) == ["net.hdf5"]
    assert canonical_contents(path) == reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return compile_reference(tmp_path_factory.mktemp("merge-end-reference"))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("ranks", [2, 3])
def test_a_recompile_under_mpiexec_leaves_only_the_network(reference, tmp_path, ranks):
    config, expected, _ = reference
    out = tmp_path / "net.hdf5"
    for options in ((), ("--clear",)):
        outcome = run(compile_cmd(config, out, ranks, *options), timeout=90)
        assert outcome.returncode == 0, outcome.describe()
        assert sorted(os.listdir(tmp_path)) == ["net.hdf5"], outcome.describe()
        assert canonical_contents(out) == expected


def test_a_merge_works_where_writeback_advice_fails(tmp_path, monkeypatch):
    from neuroscaffold.storage import _merge, _writeback

    def refused(*args):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(_merge, "_WRITEBACK", 1)
    monkeypatch.setattr(_writeback.os, "posix_fadvise", refused)
    path = tmp_path / "net.hdf5"
    Network(Configuration(two_layers()), path).compile(quiet=True)
    assert len(from_storage(path).get_connectivity_set("c_to_b")) == 32 * 90

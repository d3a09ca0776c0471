"""Committed work is checked before it is reused, and stored connections on read.

A compile is killed (``kill -9`` from inside its first connectivity job: every
placement job is committed by then, on every rank), a committed shard is damaged
(bytes changed, cut short, deleted, or a journal line changed), and ``--resume``,
serially and at ``-n 2``/``-n 3``, gives the network of a clean compile: the damaged
jobs run again, and one note line says so. A finished network whose pairs point
outside their populations is refused on read with one typed error.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from neuroscaffold.exceptions import CorruptDataError
from neuroscaffold.storage import canonical_contents
from tests.storage._crash import compile_cmd, library_noise, run, show
from tests.storage._killing import killed_compile, killing_reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A configuration whose compile kills itself once, and its clean compile."""
    return killing_reference(tmp_path_factory.mktemp("damaged-parts"))


def _placement_line(parts: Path) -> tuple[Path, dict]:
    """The journal and commit line of the granule block of chunk (0, 0, 0)."""
    for journal in sorted(parts.glob("*.journal")):
        for line in journal.read_bytes().split(b"\n")[:-1]:
            record = json.loads(line)
            if record["job"].startswith("{root}.placement.granular:0_0_0:"):
                return journal, record
    raise AssertionError(f"no commit of the granular job of chunk 0_0_0 in {parts}")


def _granule_block(record: dict) -> list:
    return next(b for b in record["blocks"] if b[1] == "granule")


def _change_bytes(parts: Path) -> None:
    journal, record = _placement_line(parts)
    offset, count = _granule_block(record)[6:8]
    data = journal.with_suffix(".data")
    with open(data, "r+b") as file:
        file.seek(offset + count * 24 // 2)  # the middle of its positions
        file.write(b"\x7f" * 24)


def _cut_short(parts: Path) -> None:
    journal, record = _placement_line(parts)
    offset, count = _granule_block(record)[6:8]
    os.truncate(journal.with_suffix(".data"), offset + count * 24 // 2)


def _delete(parts: Path) -> None:
    journal, _ = _placement_line(parts)
    journal.with_suffix(".data").unlink()


def _change_journal(parts: Path) -> None:
    """A digit of the block's offset changed: the line still parses, but lies."""
    journal, record = _placement_line(parts)
    block = _granule_block(record)
    text = journal.read_bytes()
    old = json.dumps(block, separators=(",", ":")).encode()
    block[6] += 24
    new = json.dumps(block, separators=(",", ":")).encode()
    assert text.count(old) == 1
    journal.write_bytes(text.replace(old, new))


NOTE = {
    _change_bytes: "has changed or short rows (1 commit): 1 committed job fails its "
                   "checksum and runs again",
    _cut_short: "has changed or short rows",
    _delete: "is missing",
    _change_journal: None,  # the line fails its own check: the job was never committed
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("damage", list(NOTE), ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("n", [None, 2, 3], ids=["serial", "n2", "n3"])
def test_damaged_committed_rows_run_again_on_resume(reference, tmp_path, n, damage):
    config, marker, _, expected = reference
    out = tmp_path / "net.hdf5"
    parts = killed_compile(config, marker, out, n)
    damage(parts)
    shown = show(out)
    assert shown.returncode == 0 and "UNFINISHED" in shown.stdout, shown.describe()

    resumed = run(compile_cmd(config, out, n, "--resume"), timeout=120)
    assert resumed.returncode == 0, resumed.describe()
    assert "Traceback" not in resumed.stderr and not library_noise(resumed.stderr), \
        resumed.describe()
    notes = [line for line in resumed.stderr.splitlines() if line.strip()]
    if NOTE[damage] is None:
        assert notes == [], resumed.describe()
    else:
        assert len(notes) == 1, resumed.describe()
        assert notes[0].startswith(f"neuroscaffold: note: {out}: net.hdf5.parts/a0001-r"), \
            resumed.describe()
        assert NOTE[damage] in notes[0], resumed.describe()
    assert not parts.exists()
    assert canonical_contents(out) == expected, "the resumed network is not the clean one"


@pytest.mark.timeout(120)
def test_a_second_resume_after_damage_needs_no_repair(reference, tmp_path):
    """The repaired jobs' new blocks replace the damaged ones for good: killed again
    after the repair, the next resume finds nothing to repair."""
    config, marker, _, expected = reference
    out = tmp_path / "net.hdf5"
    parts = killed_compile(config, marker, out, None)
    _change_bytes(parts)
    # The repair runs in a compile that is killed again in its first connectivity job.
    marker.write_text("")
    again = run(compile_cmd(config, out, None, "--resume"), timeout=120)
    assert again.returncode != 0 and "1 committed job fails its checksum" in again.stderr, \
        again.describe()
    resumed = run(compile_cmd(config, out, None, "--resume"), timeout=120)
    assert resumed.returncode == 0 and "note:" not in resumed.stderr, resumed.describe()
    assert canonical_contents(out) == expected


def _pairs_offset(path: Path, name: str) -> int:
    with h5py.File(path, "r", locking=False) as file:
        return file[f"connectivity/{name}/pairs"].id.get_offset()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", [-4_294_967_221, 10**9], ids=["negative", "too-large"])
def test_pairs_outside_their_populations_are_refused_on_read(reference, tmp_path, value):
    from neuroscaffold import from_storage

    _, _, clean, _ = reference
    path = tmp_path / "net.hdf5"
    shutil.copy(clean, path)
    offset = _pairs_offset(path, "golgi_to_granule")
    with open(path, "r+b") as file:  # pair 5's postsynaptic index
        file.seek(offset + (5 * 2 + 1) * 8)
        file.write(np.int64(value).tobytes())
    network = from_storage(path)
    connections = network.get_connectivity_set("golgi_to_granule")
    expected = (f"{path}: a damaged network file (connectivity set 'golgi_to_granule', "
                f"pair 5: postsynaptic index {value:,} is outside its ")
    with pytest.raises(CorruptDataError) as raised:
        connections.load_connections()
    assert str(raised.value).startswith(expected) and "\n" not in str(raised.value)
    assert str(raised.value).endswith("compile it again with --clear")
    with pytest.raises(CorruptDataError, match="pair 5: postsynaptic"):
        list(connections.iter_connections(rows=4))  # found in its own piece
    with pytest.raises(CorruptDataError):
        np.asarray(connections)
    # The other sets still read.
    assert len(network.get_connectivity_set("granule_to_golgi").load_connections())

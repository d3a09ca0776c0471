"""What the storage does when the world misbehaves: a full disk, two writers of one
path, a damaged network file, a closed output pipe, an output path that is not a
network. Each ends with one line (never a traceback or a hang) and loses no committed
work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from neuroscaffold.storage import canonical_contents
from tests._mpi import base_env, mpiexec_path
from tests.storage._crash import (
    compile_cmd,
    finish,
    library_noise,
    run,
    show,
    start,
    write_config,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The example configuration, its uninterrupted serial compile and its contents."""
    folder = tmp_path_factory.mktemp("faults-reference")
    config = write_config(folder)
    out = folder / "reference.hdf5"
    outcome = run(compile_cmd(config, out), timeout=120)
    assert outcome.returncode == 0, outcome.describe()
    return config, out, canonical_contents(out)


def _error_lines(outcome) -> list[str]:
    return [line for line in outcome.stderr.splitlines() if line.strip()]


# --- a full disk -------------------------------------------------------------------

def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("n", [None, 2], ids=["serial", "n2"])
def test_a_full_disk_ends_with_one_line_and_resumes_once_there_is_space(reference, tmp_path, n):
    config, _, expected = reference
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.returncode}")
    try:
        out = disk / "net.hdf5"
        # Told before anything is written: the file would not fit.
        early = run(compile_cmd(config, out, n), timeout=90)
        lines = _error_lines(early)
        assert early.returncode == 1 and len(lines) == 1, early.describe()
        assert lines[0].startswith("neuroscaffold: error: the network file would take about ")
        assert "free on its disk" in lines[0] and "--force" in lines[0], early.describe()
        assert not out.exists() and not Path(f"{out}.parts").exists(), early.describe()
        # Forced: the disk fills up during the compile.
        full = run(compile_cmd(config, out, n, "--force"), timeout=90)
        assert full.returncode == 1, full.describe()
        assert "Traceback" not in full.stderr + full.stdout, full.describe()
        assert not library_noise(full.stderr + full.stdout), full.describe()
        lines = _error_lines(full)
        assert lines, full.describe()
        last = lines[-1]
        assert last.startswith("neuroscaffold: error: "), full.describe()
        assert "no space left on the device" in last and " free" in last, full.describe()
        assert len(lines) == 1, f"more than one line on stderr\n{full.describe()}"
        if out.exists():
            shown = show(out)
            assert shown.returncode == 0, shown.describe()
            assert "UNFINISHED" in shown.stdout.splitlines()[0], shown.describe()

        grown = _sh("mount", "-o", "remount,size=200m", str(disk))
        assert grown.returncode == 0, grown.stderr
        resumed = run(compile_cmd(config, out, n, "--resume"), timeout=90)
        assert resumed.returncode == 0, resumed.describe()
        assert not Path(f"{out}.parts").exists()
        assert canonical_contents(out) == expected
    finally:
        if _sh("umount", str(disk)).returncode != 0:
            _sh("umount", "-l", str(disk))


# --- two writers -------------------------------------------------------------------

def _wait_for(path: Path, proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the first compile ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.005)


def _another_writer_line(line: str, out: Path) -> bool:
    return (line.startswith(f"neuroscaffold: error: {out}: another process is writing "
                            "this network (pid ")
            and line.endswith("; wait for it to end, or write to another path"))


def _complete(out: Path) -> str:
    shown = show(out)
    assert shown.returncode == 0, shown.describe()
    lines = shown.stdout.splitlines()
    assert lines and "UNFINISHED" not in lines[0] and lines[-1].startswith("total: "), \
        shown.describe()
    assert not Path(f"{out}.parts").exists()
    return lines[-1]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("options", [("--clear",), (), ("--resume",)],
                         ids=["clear", "plain", "resume"])
@pytest.mark.parametrize("second", [None, 2], ids=["serial", "n2"])
def test_a_second_writer_is_refused_while_a_compile_runs(tmp_path, second, options):
    config = write_config(tmp_path, "big.yaml", x=800, z=800)
    out = tmp_path / "big.hdf5"
    first = start(compile_cmd(config, out, 2))
    try:
        _wait_for(Path(f"{out}.parts") / "lock", first)
        begin = time.monotonic()
        refused = run(compile_cmd(config, out, second, *options), timeout=30)
        took = time.monotonic() - begin
        assert first.poll() is None, "the first compile ended before the second was refused"
        assert refused.returncode == 1, refused.describe()
        lines = _error_lines(refused)
        assert len(lines) == 1 and _another_writer_line(lines[0], out), refused.describe()
        assert took < 15, f"the refusal took {took:.1f} s"
        outcome = finish(first, 120)
    finally:
        if first.poll() is None:
            finish(first, 120)
    assert outcome.returncode == 0, outcome.describe()
    assert not library_noise(outcome.stderr + outcome.stdout), outcome.describe()
    assert "96," not in _complete(out)  # the big network, not the example's


def _without_mpi4py(folder: Path) -> dict[str, str]:
    """An environment in which mpi4py and mpilock fail to import, as if not installed
    (like the ``make_env`` fixture of tests/services), and each process runs alone."""
    shims = folder / "hide-mpi4py"
    for module in ("mpi4py", "mpilock"):
        (shims / module).mkdir(parents=True, exist_ok=True)
        (shims / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
    env = base_env(NEUROSCAFFOLD_IGNORE_PARALLEL="1")
    env["PYTHONPATH"] = os.pathsep.join([str(shims), env["PYTHONPATH"]])
    return env


@pytest.mark.timeout(180)
def test_processes_that_each_think_they_are_alone_write_one_at_a_time(tmp_path):
    config = write_config(tmp_path, "big.yaml", x=800, z=800)
    out = tmp_path / "big.hdf5"
    cmd = [mpiexec_path(), "-n", "2", sys.executable, "-m", "neuroscaffold", "compile",
           str(config), "-o", str(out), "-q"]
    outcome = run(cmd, timeout=150, env=_without_mpi4py(tmp_path))
    compiled = [line for line in outcome.stdout.splitlines() if line.startswith("compiled ")]
    assert len(compiled) == 1 and "on 1 rank:" in compiled[0], outcome.describe()
    lines = _error_lines(outcome)
    assert len(lines) == 1 and _another_writer_line(lines[0], out), outcome.describe()
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.describe()
    _complete(out)


# --- a damaged network file ----------------------------------------------------------

def _truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _zero_metadata(path: Path) -> None:
    """Zero the bytes after the superblock (object headers, the root group)."""
    with open(path, "r+b") as file:
        file.seek(96)
        file.write(bytes(4000))


def _garble_middle_table(path: Path) -> None:
    """Overwrite, with a pattern, the block table (of a set) nearest the file's middle:
    the rows' data itself carries no checksum, but the tables must be checked."""
    import h5py

    tables = []
    with h5py.File(path, "r", locking=False) as file:
        file.visititems(lambda name, item: tables.append(
            (item.id.get_offset(), item.id.get_storage_size()))
            if isinstance(item, h5py.Dataset) and name.endswith("/blocks") else None)
    middle = path.stat().st_size // 2
    offset, size = min(tables, key=lambda table: abs(table[0] - middle))
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write((b"\xa5\x5a" * size)[:size])


def _garble_end(path: Path) -> None:
    """Overwrite the last 64 kB (the placement sets' tables and rows) with a pattern."""
    with open(path, "r+b") as file:
        file.seek(path.stat().st_size - 65536)
        file.write(b"\xa5\x5a" * 32768)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", [_truncate_half, _zero_metadata, _garble_middle_table,
                                    _garble_end],
                         ids=["truncated", "metadata", "middle-table", "end"])
def test_a_damaged_network_is_reported_and_replaced_only_with_clear(reference, tmp_path, damage):
    config, complete, expected = reference
    out = tmp_path / "net.hdf5"
    shutil.copyfile(complete, out)
    damage(out)
    damaged = out.read_bytes()

    shown = show(out)
    lines = _error_lines(shown)
    assert shown.returncode == 1, shown.describe()
    assert len(lines) == 1 and lines[0].startswith(f"neuroscaffold: error: {out}: a damaged "), \
        shown.describe()
    assert "Traceback" not in shown.stderr

    refused = run(compile_cmd(config, out), timeout=60)
    lines = _error_lines(refused)
    assert refused.returncode == 1, refused.describe()
    assert len(lines) == 1 and "damaged" in lines[0] and "--clear" in lines[0], refused.describe()
    assert out.read_bytes() == damaged, "a compile without --clear changed the damaged file"

    rebuilt = run(compile_cmd(config, out, None, "--clear"), timeout=60)
    assert rebuilt.returncode == 0, rebuilt.describe()
    assert canonical_contents(out) == expected


# --- a closed output pipe ------------------------------------------------------------

@pytest.mark.timeout(180)
@pytest.mark.parametrize("quiet", [False, True], ids=["progress", "quiet"])
def test_a_closed_output_pipe_loses_nothing(reference, tmp_path, quiet):
    config, _, expected = reference
    out = tmp_path / "net.hdf5"
    command = (f"{mpiexec_path()} -n 2 {sys.executable} -m neuroscaffold compile {config} "
               f"-o {out}{' -q' if quiet else ''} 2>&1 | head -1")
    proc = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=base_env(), start_new_session=True)
    outcome = finish(proc, 60, "of a compile whose output pipe closed")
    # No rank may outlive the pipeline.
    deadline = time.monotonic() + 20
    while True:
        left = [p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and str(out) in " ".join(p.info["cmdline"])
                and p.pid != os.getpid()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not left, f"processes left after the pipeline ended: {[p.pid for p in left]}\n" \
                     f"{outcome.describe()}"
    assert out.exists(), f"no network file after the run\n{outcome.describe()}"
    shown = show(out)
    assert shown.returncode == 0, shown.describe()
    if "UNFINISHED" in shown.stdout.splitlines()[0]:
        resumed = run(compile_cmd(config, out, 2, "--resume"), timeout=90)
        assert resumed.returncode == 0, resumed.describe()
    else:
        assert not Path(f"{out}.parts").exists(), shown.stdout
    assert canonical_contents(out) == expected, outcome.describe()


# --- an output path that is not a network ----------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("spelling", ["same", "dotted"])
def test_the_configuration_file_is_never_the_output(reference, tmp_path, spelling):
    config = write_config(tmp_path)
    text = config.read_bytes()
    out = config if spelling == "same" else tmp_path / "." / ".." / tmp_path.name / config.name
    for options in ((), ("--clear",)):
        refused = run(compile_cmd(config, out, None, *options), timeout=60)
        lines = _error_lines(refused)
        assert refused.returncode == 1, refused.describe()
        assert lines == [f"neuroscaffold: error: {out}: is the configuration file; "
                         "choose another output path"], refused.describe()
        assert config.read_bytes() == text
        assert not Path(f"{out}.parts").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [None, 2], ids=["serial", "n2"])
def test_a_text_file_is_never_overwritten(reference, tmp_path, n):
    config = reference[0]
    out = tmp_path / "notes.txt"
    out.write_text("my notes, not a network\n")
    for options in ((), ("--clear",), ("--resume",), ("--append",)):
        refused = run(compile_cmd(config, out, n, *options), timeout=60)
        lines = _error_lines(refused)
        assert refused.returncode == 1, refused.describe()
        assert lines == [f"neuroscaffold: error: {out}: not an HDF5 file; refusing to "
                         "overwrite it: choose another output path"], refused.describe()
        assert out.read_text() == "my notes, not a network\n"
        assert not Path(f"{out}.parts").exists()

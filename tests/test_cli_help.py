"""A CLI that helps: --version, -v/--traceback, missing mpi4py under mpiexec, a closed
stdout, display names, the first progress line, --trace checked early, bounded
messages, YAML bombs, and strategy modules next to the configuration."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from neuroscaffold import Configuration, ConfigurationError, Network, StorageError, __version__
from neuroscaffold.cli import main
from neuroscaffold.progress._stats import ProgressSnapshot
from tests._mpi import ROOT, base_env, run_script
from tests.config._models import two_layers

CLI = "import sys; from neuroscaffold.cli import main; sys.exit(main(sys.argv[1:]))"
SMALL = ROOT / "examples" / "small.yaml"


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(two_layers()))
    return path


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"neuroscaffold {__version__}\n"


def test_traceback_on_request_only(capsys, tmp_path):
    missing = tmp_path / "nope.yaml"
    assert main(["compile", str(missing)]) == 1
    assert capsys.readouterr().err == f"neuroscaffold: error: {missing}: no such configuration file\n"
    for argv in (["-v", "compile", str(missing)], ["compile", str(missing), "--traceback"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("Traceback (most recent call last):")
        assert err.endswith(f"neuroscaffold: error: {missing}: no such configuration file\n")


BLOCK_MPI4PY = ("import sys; sys.modules['mpi4py'] = None; sys.modules['mpi4py.MPI'] = None\n"
                + CLI)


@pytest.mark.mpi
def test_missing_mpi4py_under_mpiexec_is_one_line_once(tmp_path, config_file):
    result = run_script(BLOCK_MPI4PY, n=2, timeout=60, tmp_path=tmp_path,
                        args=["compile", str(config_file), "-o", str(tmp_path / "o.hdf5")])
    assert result.returncode == 1, result.describe()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("neuroscaffold: error: this process was started by an MPI launcher")
    assert "pip install 'neuroscaffold[mpi]'" in lines[0]


def test_a_closed_stdout_is_not_an_error(tmp_path, config_file):
    out_file = tmp_path / "o.hdf5"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "compile", str(config_file), "-o", str(out_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env(), cwd=tmp_path)
    proc.stdout.close()  # like `| head -0`
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err
    assert b"Broken pipe" not in err and b"Traceback" not in err
    assert main(["show", str(out_file)]) == 0  # the work was done


def test_the_log_names_strategies_without_root_and_counts_every_job_at_once(tmp_path):
    trace = tmp_path / "t.json"
    result = run_script(CLI, timeout=60, tmp_path=tmp_path,
                        args=["compile", str(ROOT / "examples" / "cerebellum.yaml"), "-o",
                              str(tmp_path / "c.hdf5"), "--trace", str(trace)]).check()
    log = [line for line in result.stderr.splitlines() if line.startswith("placement")]
    # every line counts all 96 jobs (a quick phase may print only its last line)
    assert all(re.match(r"placement( finished)?: \d+/96 jobs", line) for line in log), \
        result.describe()
    assert re.match(r"placement finished: 96/96 jobs", log[-1]), result.describe()
    events = json.loads(trace.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    groups = {e.get("cat") for e in events if e.get("ph") == "X"}
    assert "placement.granular" in groups and "connectivity.granule_to_golgi" in groups
    assert not any("{root}" in json.dumps(e) for e in events)


def test_a_stopped_pool_does_not_say_finished():
    snapshot = ProgressSnapshot(label="placement finished", groups=(), total=576, ended=576,
                                failed=0, cancelled=0, running=(), n_running=0, failures=(),
                                n_failures=0, elapsed=3.0, eta=None, now=0.0, aborted=500)
    assert snapshot.summary() == ("placement stopped: 576/576 jobs, 0 failed, 500 aborted, "
                                  "0 running, 3 s elapsed")


def test_an_unwritable_trace_fails_before_the_compile(capsys, tmp_path, config_file, monkeypatch):
    from neuroscaffold.network import Network

    compiled = []
    monkeypatch.setattr(Network, "compile", lambda self, **kwargs: compiled.append(kwargs))
    out_file = tmp_path / "o.hdf5"
    trace = tmp_path / "no" / "dir" / "t.json"
    assert main(["compile", str(config_file), "-o", str(out_file), "-q", "--trace", str(trace)]) == 1
    assert capsys.readouterr().err == (f"neuroscaffold: error: --trace {trace}: cannot write "
                                       "there (no such file or directory)\n")
    assert not compiled and not out_file.exists()


@pytest.mark.mpi
def test_under_mpiexec_an_unwritable_trace_fails_on_every_rank_with_one_line(tmp_path, config_file):
    trace = tmp_path / "no" / "t.json"
    result = run_script(CLI, n=2, timeout=60, tmp_path=tmp_path,
                        args=["compile", str(config_file), "-o", str(tmp_path / "o.hdf5"),
                              "--trace", str(trace)])
    assert result.returncode == 1, result.describe()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"neuroscaffold: error: --trace {trace}: cannot write there (no such file "
                     "or directory)"], result.describe()
    assert not (tmp_path / "o.hdf5").exists()


def test_report_on_a_missing_file(capsys, tmp_path):
    assert main(["report", str(tmp_path / "x.json"), "-o", str(tmp_path / "r.html")]) == 1
    assert capsys.readouterr().err == f"neuroscaffold: error: {tmp_path}/x.json: no such file\n"


def test_lookups_suggest_a_name(tmp_path):
    network = Network(Configuration(two_layers()), tmp_path / "n.hdf5")
    network.compile(quiet=True)
    with pytest.raises(StorageError, match=r"no cell type 'aa' \(did you mean 'a'\?\)$"):
        network.get_placement_set("aa")
    with pytest.raises(StorageError, match=r"no connectivity set 'a_to_bb' \(did you mean 'a_to_b'\?\)$"):
        network.get_connectivity_set("a_to_bb")
    with pytest.raises(KeyError, match=r"no 'place_aa' in placement \(did you mean 'place_a'\?\)"):
        network.placement["place_aa"]


def test_a_huge_bad_value_gives_a_short_message(tmp_path):
    data = two_layers()
    data["placement"]["place_a"]["density"] = ["x" * 100] * 100_000
    with pytest.raises(ConfigurationError) as info:
        Configuration(data)
    assert str(info.value).startswith("placement.place_a.density: expected a number, got ['xxx")
    assert len(str(info.value)) < 200


BOMB = "a: &a [" + ",".join(["lol"] * 9) + "]\n" + "".join(
    f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, message", [
    (BOMB, r"g: YAML aliases expand to 5,380,840 values \(at most 1,000,000 more than written\); "
           "refusing to expand them"),
    ("a: &a [1, *a]\n", r"a\.1: recursive YAML alias \(a value that contains itself\)"),
])
@pytest.mark.timeout(60)  # expanding the bomb (9**9 values) would never end
def test_yaml_alias_bombs_are_refused_fast(capsys, tmp_path, text, message):
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    assert main(["compile", str(config), "--dry-run"]) == 1
    assert re.fullmatch(f"neuroscaffold: error: {re.escape(str(config))}: {message}\n",
                        capsys.readouterr().err)


def test_yaml_aliases_of_sane_size_still_work():
    text = "cell_types:\n  a: &t {density: 1.0e-4}\n  b: *t\n"
    assert Configuration.from_yaml(text).cell_types["b"].density == 1e-4


MODULE = '''
import numpy as np
from neuroscaffold import PlacementStrategy, config

@config.node
class Corner(PlacementStrategy):
    def place(self, chunk, indicators):
        for name in indicators:
            self.place_cells(name, np.array([chunk.ldc]), chunk)
'''


@pytest.mark.parametrize("ranks", [None, pytest.param(2, marks=pytest.mark.mpi)])
def test_a_strategy_module_next_to_the_config_imports_without_pythonpath(tmp_path, ranks):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "cornerstrategies.py").write_text(MODULE)
    data = two_layers()
    data["placement"]["place_a"]["strategy"] = "cornerstrategies.Corner"
    (folder / "net.yaml").write_text(yaml.safe_dump(data))
    result = run_script(CLI, n=ranks, timeout=60, tmp_path=tmp_path,
                        args=["compile", str(folder / "net.yaml"), "-o", str(tmp_path / "o.hdf5"),
                              "-q"], cwd=tmp_path).check()
    assert "522 cells" not in result.stdout  # place_a made one cell per chunk: 4 + 90 + 32
    assert re.search(r"compiled 'two_layers' .*: 126 cells", result.stdout), result.describe()


def test_a_missing_strategy_module_says_where_it_looked(capsys, tmp_path):
    data = two_layers()
    data["placement"]["place_a"]["strategy"] = "nosuchmodule.Corner"
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(data))
    assert main(["compile", str(tmp_path / "net.yaml"), "-q"]) == 1
    assert capsys.readouterr().err == (
        "neuroscaffold: error: placement.place_a.strategy: cannot import 'nosuchmodule.Corner': "
        f"no module named 'nosuchmodule' (looked in the configuration's folder {tmp_path} and "
        "on sys.path)\n")


SLOW = '''
import time
from neuroscaffold import PlacementStrategy, config

@config.node
class Slow(PlacementStrategy):
    def place(self, chunk, indicators):
        time.sleep(0.05)
'''


def test_after_ctrl_c_the_last_line_says_stopped(tmp_path):
    import signal

    (tmp_path / "slowstrategies.py").write_text(SLOW)
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump({
        "network": {"x": 800, "y": 800, "z": 400},
        "partitions": {"all": {"type": "layer", "thickness": 800}},
        "cell_types": {"a": {"count": 10}},
        "placement": {"p": {"strategy": "slowstrategies.Slow", "cell_types": ["a"],
                            "partitions": ["all"]}},
    }))
    # main() is called as a library call would be: it keeps the SIGINT disposition it
    # inherits, and a runner started in the background (``cmd &``) ignores SIGINT.
    proc = subprocess.Popen([sys.executable, "-c", CLI, "compile", str(tmp_path / "slow.yaml"),
                             "-o", str(tmp_path / "slow.hdf5")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=base_env(), cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Interrupt once the compile shows its first progress line (placement runs for about
    # 13 s), not after a fixed sleep: on a busy machine the process may still import.
    first = ""
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("placement: "), first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
    err = first + err
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert re.fullmatch(r"neuroscaffold: interrupted: \d+ of \d+ jobs committed; resume with --resume", lines[-1]), lines[-1]
    assert re.fullmatch(r"placement stopped: 256/256 jobs, 0 failed, \d+ aborted, .*", lines[-2]), err
    assert "finished" not in err


def test_a_job_error_that_prints_a_whole_value_is_cut_and_located(capsys, tmp_path):
    from neuroscaffold.progress._stats import error_text

    data = two_layers()
    data["placement"]["place_a"]["strategy"] = "tests._user_strategies.Shouting"
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(data))
    assert main(["compile", str(tmp_path / "net.yaml"), "-o", str(tmp_path / "o.hdf5"), "-q"]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "neuroscaffold: error: 4 of 12 jobs failed, 4 jobs cancelled:"
    line_no = next(i for i, text in enumerate(
        (ROOT / "tests" / "_user_strategies.py").read_text().splitlines(), 1)
        if "# the raising line" in text)
    # the same error in 4 jobs: one line, with the count and the first job
    assert lines[1].startswith("  4 jobs failed with one error, the first: job 'place place_a (")
    for line in lines[1:2]:
        assert line.endswith(f" ...] (_user_strategies.py:{line_no})")
        assert len(line) < 450
    assert len(err) < 3_000
    assert len(error_text(ValueError("x" * 10**6))) == 300

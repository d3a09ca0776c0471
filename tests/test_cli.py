"""The command line: exit codes, one-line errors, compile and show."""

from __future__ import annotations

import json
import re
import sys

import pytest
import yaml

from neuroscaffold.cli import main
from tests._mpi import run_script
from tests.config._models import two_layers


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(two_layers()))
    return path


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [["--help"], ["compile", "--help"], ["show", "--help"]])
def test_help_everywhere(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: neuroscaffold")


def test_compile_then_show(capsys, config_file, tmp_path):
    out_file = tmp_path / "out.hdf5"
    code, out, err = run(capsys, "compile", config_file, "-o", out_file, "-q")
    assert (code, err) == (0, "")
    assert re.fullmatch(rf"compiled 'two_layers' into {re.escape(str(out_file))} in [0-9.]+ s "
                        r"on 1 rank: 522 cells, [0-9,]+ connections\n", out)
    code, out, err = run(capsys, "show", out_file)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"network 'two_layers' in {out_file} (")
    assert "8 chunks of 100 x 100 x 100 µm, seed 3" in lines[1]
    assert re.search(r"^  a +400 cells$", out, re.M)
    assert re.search(r"^  c_to_b +2,880 connections  \(c -> b\)$", out, re.M)
    assert lines[-1].startswith("total: 522 cells, ")


def test_recompiling_needs_a_choice(capsys, config_file, tmp_path):
    out_file = tmp_path / "out.hdf5"
    assert run(capsys, "compile", config_file, "-o", out_file, "-q")[0] == 0
    code, out, err = run(capsys, "compile", config_file, "-o", out_file, "-q")
    assert (code, out) == (1, "")
    assert err == (f"neuroscaffold: error: {out_file}: already holds a compiled network; "
                   "choose to rebuild it (--clear) or to add the strategies it does not have "
                   "(--append)\n")
    assert run(capsys, "compile", config_file, "-o", out_file, "-q", "--clear")[0] == 0
    code, out, err = run(capsys, "compile", config_file, "-o", out_file, "-q", "--append")
    assert (code, err) == (1, f"neuroscaffold: error: {out_file}: nothing to append: the network "
                              "already has every strategy of the configuration\n")
    with pytest.raises(SystemExit) as info:
        main(["compile", str(config_file), "--clear", "--append"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_output_defaults_to_the_config_name(capsys, config_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "compile", config_file, "-q")[0] == 0
    assert (tmp_path / "net.hdf5").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compile", "{tmp}/nope.yaml"], "{tmp}/nope.yaml: no such configuration file"),
        (["compile", "{tmp}/bad.yaml"],
         "placement.place_a.density: expected a number, got 'abc'"),
        (["compile", "{tmp}/net.yaml", "-o", "{tmp}/no/dir/out.hdf5"],
         "{tmp}/no/dir/out.hdf5: directory '{tmp}/no/dir' does not exist"),
        (["show", "{tmp}/nope.hdf5"], "{tmp}/nope.hdf5: no such file"),
        (["show", "{tmp}/net.yaml"], "{tmp}/net.yaml: not an HDF5 file"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_1(capsys, config_file, tmp_path, argv, message):
    bad = two_layers()
    bad["placement"]["place_a"]["density"] = "abc"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    argv = [arg.format(tmp=tmp_path) for arg in argv] + (["-q"] if argv[0] == "compile" else [])
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == f"neuroscaffold: error: {message.format(tmp=tmp_path)}\n"


def test_trace_writes_a_chrome_trace(capsys, config_file, tmp_path):
    trace = tmp_path / "trace.json"
    code, _, err = run(capsys, "compile", config_file, "-o", tmp_path / "o.hdf5", "-q",
                       "--trace", trace)
    assert (code, err) == (0, "")
    events = json.loads(trace.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    assert any("place place_a" in str(event.get("name")) for event in events)


CLI = "import sys; from neuroscaffold.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.mpi
def test_under_mpiexec_errors_are_printed_once_and_compile_works(tmp_path, config_file):
    bad = tmp_path / "bad.yaml"
    bad.write_text("placement: [")
    result = run_script(CLI, n=2, timeout=60, tmp_path=tmp_path,
                        args=["compile", str(bad), "-o", str(tmp_path / "x.hdf5")])
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("neuroscaffold:")]
    assert errors == [f"neuroscaffold: error: {bad}:1:13: invalid YAML: expected the node "
                      "content, but found '<stream end>'"], result.describe()
    assert "Traceback" not in result.stderr
    out_file = tmp_path / "ok.hdf5"
    result = run_script(CLI, n=2, timeout=60, tmp_path=tmp_path,
                        args=["compile", str(config_file), "-o", str(out_file), "-q"]).check()
    # searched, not matched line by line: UCX (under mpich) may warn at exit about the
    # MPI windows mpilock keeps, on stdout, between the lines of other ranks
    summaries = re.findall(r"compiled 'two_layers' into \S+ in [0-9.]+ s on 2 ranks: 522 cells, "
                           r"[0-9,]+ connections", result.stdout)
    assert len(summaries) == 1, result.describe()


def test_python_dash_m_runs_the_command_line(tmp_path):
    result = run_script("import runpy; runpy.run_module('neuroscaffold', run_name='__main__')",
                        timeout=60, tmp_path=tmp_path, args=["show", str(tmp_path / "x.hdf5")])
    assert result.returncode == 1
    assert result.stderr == f"neuroscaffold: error: {tmp_path}/x.hdf5: no such file\n"
    assert sys.executable in result.cmd


def test_the_output_is_never_the_configuration_or_another_file(capsys, config_file, tmp_path):
    before = config_file.read_text()
    code, out, err = run(capsys, "compile", config_file, "-o", config_file, "-q", "--clear")
    assert (code, out) == (1, "")
    assert err == (f"neuroscaffold: error: {config_file}: is the configuration file; choose "
                   "another output path\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, out, err = run(capsys, "compile", config_file, "-o", notes, "-q", "--clear")
    assert err == (f"neuroscaffold: error: {notes}: not an HDF5 file; refusing to overwrite "
                   "it: choose another output path\n")
    assert config_file.read_text() == before and notes.read_text() == "mine"


def test_compile_help_explains_clear_append_and_resume(capsys):
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--resume run only the jobs that were not committed (same CONFIG)" in text
    assert "--append add to it the strategies of CONFIG that it does not have yet" in text
    assert "use it when you extend a model" in text
    assert "the old network stays until the new one is complete" in text

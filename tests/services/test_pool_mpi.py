"""The job pool under ``mpiexec -n 2``, ``-n 3`` and ``-n 4``.

Each launch runs one script of ``pool_scripts/`` that opens many pools in a row and
prints, per rank, its plan (``R<rank> PLAN <section>``), then ``R<rank> CHECK <name> ok``
or ``... FAIL <details>``. The test requires every check ok, every planned section run to
its end on every rank, ranks of one role reporting the same checks, all within the time
limit (a hang is a failure, with what every rank printed so far). There is no hand-kept
list of check names to update.

- ``pool_checks.py``: results, dependency order (events and times), failure cascade,
  cancellation, fail_fast, listeners (order, late, context managers, max_wait pings,
  handled failures), two pools in a row, submission after execute, pool_cache on every
  rank, lambdas and closures, errors that travel (remote tracebacks, unpicklable
  results, exceptions and arguments), schedule(), 2000x2000 jobs, the seed snippets.
- ``pool_breaks.py``: pools that break (a listener raising during execution, on
  EXECUTING, on entering; the main rank or a worker raising before execute()): every
  rank leaves with a clear error, and the world stays usable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._mpi import run_script

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

SCRIPTS = Path(__file__).parent / "pool_scripts"
SIZES = [2, 3, 4]
TIMEOUT = 90

def reported_checks(result, rank: int) -> tuple[list[str], list[str]]:
    """The names of ``rank``'s checks, and the lines of those that failed."""
    names, failures = [], []
    for line in result.lines(f"R{rank} CHECK "):
        if line.endswith(" ok"):
            names.append(line[: -len(" ok")])
        else:
            name, _, details = line.partition(" FAIL ")
            names.append(name)
            failures.append(f"R{rank} {name}: {details}")
    return names, failures


def assert_checks(result, size: int, roles: dict[int, str]) -> None:
    """Every rank ran every planned section to its end, every check passed, and ranks
    of the same role reported the same checks (no hand-kept list of check names: the
    script's plan and the ranks themselves are the reference)."""
    failures, wrong = [], []
    by_role: dict[str, dict[int, list[str]]] = {}
    for rank in range(size):
        got, failed = reported_checks(result, rank)
        failures += failed
        plan = result.lines(f"R{rank} PLAN ")
        if not plan:
            wrong.append(f"R{rank}: no plan printed")
        missing = [name for name in plan if f"section {name} ran" not in got]
        if missing or "done" not in got:
            wrong.append(f"R{rank}: sections not run to their end: {missing}, done: {'done' in got}")
        if len(got) != len(set(got)):
            wrong.append(f"R{rank}: a check reported twice")
        by_role.setdefault(roles.get(rank, "worker"), {})[rank] = sorted(got)
    for role, ranks in by_role.items():
        first_rank, first = next(iter(ranks.items()))
        for rank, got in ranks.items():
            if got != first:
                wrong.append(
                    f"R{rank} ({role}) differs from R{first_rank}: "
                    f"{sorted(set(got) ^ set(first))}"
                )
    assert not failures and not wrong, "\n".join(failures + wrong) + "\n" + result.describe()
    assert result.returncode == 0, result.describe()


@pytest.mark.parametrize("n", SIZES, ids=[f"n{n}" for n in SIZES])
def test_pool_behaviours_on_every_rank(n):
    result = run_script(SCRIPTS / "pool_checks.py", n=n, timeout=TIMEOUT)
    assert_checks(result, n, {0: "main"})
    main, _ = reported_checks(result, 0)
    worker, _ = reported_checks(result, 1)
    assert len(main) > 80 and len(worker) > 35, (len(main), len(worker))  # every section checked


@pytest.mark.parametrize("n", SIZES, ids=[f"n{n}" for n in SIZES])
def test_broken_pools_release_every_rank(n):
    result = run_script(SCRIPTS / "pool_breaks.py", n=n, timeout=TIMEOUT)
    last = n - 1
    assert_checks(result, n, {0: "main", last: "failing worker"})
    failing, _ = reported_checks(result, last)
    assert "worker raises before execute: rank error" in failing

"""The live rich display, drawn on rich's recording console (a fake terminal)."""

import io

from rich.console import Console

from neuroscaffold.progress import LogProgress, RichProgress, default_listener
from tests.progress._fakes import Clock, FakePool, run_many, submitter


def _console(width=110):
    return Console(
        record=True, force_terminal=True, width=width, file=io.StringIO(), color_system=None
    )


def _busy_pool(listener, clock):
    pool = FakePool(listener).open()
    a, b = submitter("root.placement.granule"), submitter("root.connectivity.golgi_to_granule")
    jobs = [pool.add(f"place granule chunk {i}", a) for i in range(4)]
    jobs += [pool.add(f"connect chunk {i}", b) for i in range(2)]
    pool.execute()
    pool.run(jobs[0], 1, 0.0, 2.0)
    pool.run(jobs[1], 2, 0.0, 2.0, error=ValueError("no room in chunk 1"))
    pool.run(jobs[2], 1, 2.0, 4.0)
    pool.start(jobs[3], 2, 5.0)
    clock.now = 10.0
    return pool


def test_frame_shows_bars_running_jobs_failures_and_times():
    clock = Clock(0.0)
    console = _console()
    progress = RichProgress(console, clock=clock, live_thread=False)
    _busy_pool(progress, clock)
    console.print(progress)
    text = console.export_text()
    assert "executing: 3/6 jobs, 1 failed, 1 running, 10 s elapsed, ~" in text
    granule = next(line for line in text.splitlines() if line.startswith("root.placement.granule"))
    assert "━" in granule and "3/4" in granule and "1 failed" in granule
    assert "0/2" in next(line for line in text.splitlines() if "golgi_to_granule" in line)
    assert "running now: 1" in text
    running = next(line for line in text.splitlines() if "place granule chunk 3" in line)
    assert "rank 2" in running and "for 5 s" in running
    assert "failures so far: 1" in text
    assert "job 'place granule chunk 1' failed on rank 2: ValueError: no room in chunk 1" in text


def test_redraws_at_a_bounded_rate_whatever_the_number_of_events():
    clock = Clock(0.0)
    console = _console()
    progress = RichProgress(console, clock=clock, live_thread=False, refresh_per_second=4)
    with progress:
        run_many(progress, 10_000, clock, 0.001)  # 10 s of events, 40,000 of them
    assert 30 <= progress.redraws <= 4 * 10 + 3
    assert "finished: 10000/10000 jobs, 0 failed, 0 running, 10 s elapsed" in console.export_text()


def test_live_thread_mode_starts_and_stops_with_the_pool():
    clock = Clock(0.0)
    console = _console()
    progress = RichProgress(console, clock=clock)
    with progress:
        run_many(progress, 1, clock, 1.0)
    assert progress._live is None
    assert "1/1 jobs" in console.export_text()


def test_many_groups_are_summed_up():
    clock = Clock(0.0)
    console = _console()
    progress = RichProgress(console, clock=clock, live_thread=False, max_groups=3)
    pool = FakePool(progress).open()
    for g in range(10):
        pool.add(f"j{g}", submitter(f"group{g}"))
    console.print(progress)
    text = console.export_text()
    assert "… 7 more groups" in text and "0/7" in text
    assert "group3" not in text


def test_default_listener_picks_by_terminal():
    assert isinstance(default_listener(None, console=_console()), RichProgress)
    plain = Console(file=io.StringIO())
    listener = default_listener(None, console=plain)
    assert isinstance(listener, LogProgress) and listener.stream is plain.file
    # Under pytest stderr is captured, so not a terminal: plain lines.
    assert isinstance(default_listener(None), LogProgress)

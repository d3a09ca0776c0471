"""The agreements between ranks (issue 16.3): on a private duplicate of the world,
every wait bounded, a timed-out request parked with its buffers, and a stop signal that
comes while a rank waits held back until the collective completed, so the ranks'
collectives keep matching. Serially and under ``mpiexec -n 2`` / ``-n 3``."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from neuroscaffold import _agreement, _signals
from neuroscaffold._agreement import Outcome, agree, collect, share
from tests._mpi import mpi_matrix


@mpi_matrix(1, 2, 3)
def test_agreements_run_on_a_private_duplicate_of_the_world(world):
    assert share(("hello", world.size)) == ("hello", world.size)
    gathered = collect(world.rank)
    assert gathered == (list(range(world.size)) if world.rank == 0 else None)
    assert agree(Outcome.OK, 10) is Outcome.OK
    if world.size > 1:
        from mpi4py import MPI

        private = _agreement._private()
        assert MPI.Comm.Compare(private, MPI.COMM_WORLD) == MPI.CONGRUENT


@mpi_matrix(1, 2, 3)
def test_a_stop_signal_deferred_on_one_rank_stops_every_rank_at_the_agreement(world):
    with _signals.deferred():
        if world.rank == world.size - 1:
            _signals.defer_pending("SIGTERM")
        assert agree(Outcome.OK, 10) is Outcome.INTERRUPTED
        assert _signals.take() == ("SIGTERM" if world.rank == world.size - 1 else None)
    assert agree(Outcome.OK, 10) is Outcome.OK


@mpi_matrix(2, 3)
def test_an_interrupt_while_waiting_in_share_is_raised_after_it_and_keeps_ranks_matched(world):
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if world.rank == 1:
            time.sleep(0.5)  # rank 0 waits in share meanwhile, and gets Ctrl-C
        else:
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        raised = False
        try:
            value = share(world.rank * 10 + 7, root=1)
        except KeyboardInterrupt:
            raised = True
        assert raised == (world.rank != 1)
        if world.rank == 1:
            assert value == 17
        # the collectives still match: the next agreement works on every rank
        assert agree(Outcome.OK, 10) is Outcome.OK
        assert share("after", root=0) == "after"
    finally:
        signal.signal(signal.SIGINT, previous)


@mpi_matrix(2, 3)
def test_a_share_that_a_rank_never_joins_ends_within_its_bound_and_parks_its_request(world):
    try:
        if world.rank == 1:
            begin = time.monotonic()
            with pytest.raises(_agreement.Unreachable):
                share("nobody comes", root=1, timeout=0.5)
            assert time.monotonic() - begin < 5
            assert _agreement._parked, "the timed-out request was dropped"
            assert agree(Outcome.OK, 0.3) is Outcome.UNREACHABLE
    finally:
        # the private communicator now holds unmatched requests: every rank makes a
        # new one (world collective) for what runs after this body
        _agreement._comm = None
        world.same_on_every_rank("next")

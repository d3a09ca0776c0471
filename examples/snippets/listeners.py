"""Seed snippet "Listeners": a listener that reacts to the pool's status changes."""

import time

from _example_file import make_example_file

from neuroscaffold import PoolProgressReason, PoolStatus, from_storage

make_example_file()
network = from_storage("example.hdf5")

# --- the snippet, as written -----------------------------------------------------------
_t = None
def report_time_elapsed(progress):
  global _t
  if progress.reason == PoolProgressReason.POOL_STATUS_CHANGE:
    if progress.status == PoolStatus.SCHEDULING:
      _t = time.time()
    elif progress.status == PoolStatus.CLOSING:
      print(f"Pool execution finished. {time.time() - _t:.1f} seconds elapsed.")

with network.create_job_pool() as pool:
  pool.add_listener(report_time_elapsed)
  pool.submit(lambda scaffold: time.sleep(2))
  pool.execute()
  # Will print `Pool execution finished. 2 seconds elapsed.`
# ---------------------------------------------------------------------------------------

if pool.is_main():
    # what the seed meant to print: the time since the pool started scheduling
    print(f"elapsed since SCHEDULING: {time.time() - _t:.1f} s")

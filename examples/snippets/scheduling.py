"""Seed snippet "Scheduling": the main rank schedules in the background while every
rank executes.

The seed's ``[*network.placement.values]()`` is a typo of the documentation it comes
from (a list cannot be called); this is the intended ``[*network.placement.values()]``.
"""

from _example_file import make_example_file

from neuroscaffold import from_storage

make_example_file()

# --- the snippet, as written (typo fixed) ----------------------------------------------
network = from_storage("example.hdf5")
with network.create_job_pool() as pool:
  if pool.is_main():
    pool.schedule([*network.placement.values()])
  pool.execute()
# ---------------------------------------------------------------------------------------

if pool.is_main():
    print("scheduled", len(pool.jobs), "jobs")

"""Seed snippet "JobPool": open a pool, queue every placement strategy, execute.

Run it serially or under ``mpiexec -n K``; it writes ``example.hdf5`` in the current
directory first.
"""

from _example_file import make_example_file

from neuroscaffold import from_storage

make_example_file()

# --- the snippet, as written -----------------------------------------------------------
network = from_storage("example.hdf5")
with network.create_job_pool() as pool:
  if pool.is_main():
    # Only the main node needs to schedule the jobs
    for component in network.placement.values():
      component.queue(pool)
  # But everyone needs to partake in the execute call
  pool.execute()
# ---------------------------------------------------------------------------------------

if pool.is_main():
    cells = {name: len(network.get_placement_set(name)) for name in network.cell_types}
    print("placed", cells)

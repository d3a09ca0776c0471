"""Seed snippet "Caching": a strategy with a ``pool_cache`` method, compiled in a
network. ``heavy_calculations`` runs at most once per rank while the strategy's jobs
run, however many times ``place`` calls it."""

from _example_file import SMALL

from neuroscaffold import Configuration, MPI, Network

# --- the snippet, as written -----------------------------------------------------------
from neuroscaffold import PlacementStrategy, config, pool_cache

@config.node
class MyStrategy(PlacementStrategy):
  @pool_cache
  def heavy_calculations(self):
    return 5 + 5

  def place(self, chunk, indicators):
    # `heavy_calculations` will be called maximum once on each parallel node
    for i in range(1000):
      self.heavy_calculations()
# ---------------------------------------------------------------------------------------

# Count the calls that get past the cache, then use the strategy in a network.
calls = []
_compute = MyStrategy.heavy_calculations.__wrapped__
MyStrategy.heavy_calculations = pool_cache(lambda self: calls.append(1) or _compute(self))

configuration = Configuration.from_file(SMALL)
configuration.placement["mine"] = MyStrategy(cell_types=["relay"], partitions=["top"])
network = Network(configuration, "caching.hdf5")
network.compile(clear=True, quiet=True)
jobs = len(network.placement["mine"].get_chunks())
print(f"rank {MPI.get_rank()}: heavy_calculations computed {len(calls)} time(s); "
      f"{jobs} jobs called it {jobs * 1000} times in all")

"""Makes ``example.hdf5`` (the file the snippets open) from ``examples/small.yaml``.

Collective: every rank calls :func:`make_example_file`, as every rank runs a snippet.
"""

from pathlib import Path

from neuroscaffold import Configuration, Network

SMALL = Path(__file__).resolve().parent.parent / "small.yaml"


def make_example_file(path: str = "example.hdf5") -> None:
    """Compile the small example network into ``path`` (replacing it)."""
    Network(Configuration.from_file(SMALL), path).compile(clear=True, quiet=True)

"""The architectures genred knows and the options each takes, without torch: a bundle's
model.json is checked against these (classifier/modeljson.py) before any network is built,
and a backbone model's head is applied without torch at all (classifier/head_np.py).
The networks themselves are in classifier/model.py (and classifier/head.py).
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHS = ("pooled", "paper", "backbone")
DEFAULT_ARCH = "backbone"  # what `genred train` trains without --arch


@dataclass(frozen=True)
class Bound:
    """The values one architecture option may take in a model.json: a number from ``low``
    to ``high`` (a whole one when ``kind`` is int), or with ``length`` a list of that many."""

    kind: type
    low: float
    high: float
    length: int | None = None


# What a bundle's arch_kwargs may hold, per architecture: classifier/bundle.py refuses a
# model.json outside these before it builds anything (``hidden: 2e9`` would allocate
# gigabytes, ``channels: -5`` crash). A new architecture adds its entry here.
ARCH_OPTIONS: dict[str, dict[str, Bound]] = {
    "pooled": {"channels": Bound(int, 1, 1024), "hidden": Bound(int, 1, 8192),
               "dropout": Bound(float, 0.0, 0.99)},
    "paper": {"channels": Bound(int, 1, 512, length=2), "hidden": Bound(int, 1, 4096),
              "dropout": Bound(float, 0.0, 0.99)},
    "backbone": {"hidden": Bound(int, 0, 4096), "dropout": Bound(float, 0.0, 0.99)},
}
# No architecture, whatever its options, may have more weights than this (400 MB).
MAX_PARAMETERS = 100_000_000

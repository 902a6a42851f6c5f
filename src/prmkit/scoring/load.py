"""``--scorer NAME_OR_PATH``: any PRM prmkit can score with, by name or folder.

A folder written by ``prmkit train`` (or a hub id of one) loads as prmkit's own ``PRM``.
Published token-classification PRMs load through ``published.py``.
"""

from __future__ import annotations

import os

from prmkit.scoring.base import Scorer


def load_scorer(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                batch_size: int = 64) -> Scorer:
    """The scorer ``name_or_path`` names (see the module docstring)."""
    from prmkit.scoring.prm import PRM

    return PRM.from_pretrained(name_or_path, cache_dir=cache_dir, batch_size=batch_size)

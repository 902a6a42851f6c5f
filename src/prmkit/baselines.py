"""Content-free step features: what a head learns when it cannot read the steps.

A PRM's quality figure means little alone: on real benchmarks a head that sees only step lengths
or noise already does well, from position and length effects. Every figure prmkit reports is
set beside the same head trained on these.
"""

from __future__ import annotations

import math

import numpy as np

from prmkit.records import Trajectory


def length_features(trajectories: list[Trajectory]) -> list[np.ndarray]:
    """Content-free features: each step's length in characters and in words (log scale)."""
    return [np.array([[math.log1p(len(s)), math.log1p(len(s.split()))] for s in t.steps],
                     dtype=np.float32) for t in trajectories]


def random_features(trajectories: list[Trajectory], dim: int, seed: int) -> list[np.ndarray]:
    """Content-free features: Gaussian noise of the backbone's width, fixed by seed."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t.num_steps, dim)).astype(np.float32) for t in trajectories]

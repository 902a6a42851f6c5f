"""The world's pools beside real model pools: their statistics and the real ranges they aim for."""

from __future__ import annotations

from prmkit.data import pools as pools_lib
from prmkit.synthetic.world import ProblemPool

# Real pools of model solutions to competition problems (CHAMP; GPT-3.5, GPT-4, GPT-4 Turbo,
# PaLM 2), as (low, high) over models; a single reported figure has low == high.
REAL_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.2, 0.6),
    "top_wrong_share": (0.4, 0.6),
    "majority_gain": (0.06, 0.13),
    "pass_at_k": (0.5, 0.87),
    "right_answer_given_wrong_step": (0.29, 0.29),
    "median_first_error_position": (0.33, 0.33),
}



def pool_stats(pools: list[ProblemPool], k: int = 16) -> dict[str, float]:
    """``prmkit.data.pools.pool_stats`` over the world's pools (see there for the keys)."""
    return pools_lib.pool_stats([p.trajectories for p in pools], k)


def format_comparison(stats: dict[str, float],
                      ranges: dict[str, tuple[float, float]] = REAL_RANGES) -> list[str]:
    """Lines that set measured pool stats beside the real ranges, e.g.
    ``"accuracy                          0.412   real 0.20-0.60"``."""
    lines = []
    for key, value in stats.items():
        real = ranges.get(key)
        if real is None:
            note = ""
        elif real[0] == real[1]:
            note = f"   real ~{real[0]:.2f}"
        else:
            note = f"   real {real[0]:.2f}-{real[1]:.2f}"
        lines.append(f"{key:<32}{value:>7.3f}{note}")
    return lines

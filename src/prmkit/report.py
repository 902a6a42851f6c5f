"""Markdown tables and plots for reports (the demo's now; evaluation's later).

Plain functions from result dicts to text or files: no training, no scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

Cell = Mapping[str, float]  # {"mean": ..., "low": ..., "high": ...}


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def interval(cell: Cell) -> str:
    """``"44.8 [40.6, 49.0]"``: a mean in percent with its 95% interval."""
    return f"{pct(cell['mean'])} [{pct(cell['low'])}, {pct(cell['high'])}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table: a header row, a rule, then one line per row."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def curve_table(curves: Mapping[str, Mapping[str, Cell]], ns: Sequence[int]) -> list[str]:
    """Methods x N, each cell an accuracy in percent with its interval."""
    return table(["method"] + [f"N={n}" for n in ns],
                 [[name] + [interval(row[str(n)]) for n in ns] for name, row in curves.items()])


def plot_curves(panels: Sequence[tuple[str, Mapping[str, Mapping[int, Cell]]]],
                ns: Sequence[int], path: Path, banded: tuple[str, ...] = (),
                dashed: tuple[str, ...] = ("oracle", "random", "longest", "shortest")) -> None:
    """Accuracy vs N, one panel per (title, curves), one line per method (a method keeps its
    colour across panels); 95% bands for the ``banded`` methods only (a dozen overlapping bands
    would hide every line). Written to a temporary name, then renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.5), squeeze=False)
    palette = plt.get_cmap("tab10").colors
    names = list(dict.fromkeys(name for _, curves in panels for name in curves))
    colors = {name: palette[k % len(palette)] for k, name in enumerate(names)}
    for ax, (title, curves) in zip(axes[0], panels):
        for name, row in curves.items():
            ax.plot(ns, [row[n]["mean"] for n in ns], "--" if name in dashed else "-",
                    marker="o", label=name, linewidth=1.5, color=colors[name])
            if name in banded:
                ax.fill_between(ns, [row[n]["low"] for n in ns], [row[n]["high"] for n in ns],
                                alpha=0.12, color=colors[name])
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ns), [str(n) for n in ns])
        ax.set_xlabel("N (candidates per problem)")
        ax.set_ylabel("accuracy")
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def plot_reliability(tables: Mapping[str, Mapping[str, Sequence[float]]], path: Path) -> None:
    """Reliability diagrams (``metrics.reliability`` tables), one line per scorer: mean label
    against mean predicted probability per bin, the diagonal being perfect calibration, and the
    share of steps per bin below. Written to a temporary name, then renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    for name, t in tables.items():
        top.plot(t["mean_prob"], t["mean_label"], marker="o", label=name)
        total = max(sum(t["count"]), 1)
        bottom.stairs([c / total for c in t["count"]], t["edges"], label=name)
    top.set_ylabel("share of steps labelled right")
    top.set_title("reliability (equal-width bins)")
    top.legend(fontsize=7)
    top.grid(alpha=0.3)
    bottom.set_xlabel("predicted probability that the step is right")
    bottom.set_ylabel("share of steps")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def log_stage(message: str, started: float) -> None:
    """``[  12.3s] message`` on stderr: a long job's progress, seconds since ``started``."""
    import sys
    import time

    print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

"""``prmkit label``: write step labels from a cheap source, resumably.

Strategies, one module each (every record keeps its steps; ``meta["labeling"]`` says how its
labels were made): ``outcome``, ``arithmetic``, ``montecarlo`` and ``judge``.

The reference answer of a record is ``meta["reference_answer"]``, or its own answer when its
outcome is known to be right. Records are written one line at a time to ``OUT.partial`` and
flushed; a rerun after a crash (even ``kill -9``) keeps the complete lines there, labels only
the rest (every rollout is seeded per record), and renames the file to ``OUT`` at the end.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prmkit.generate.base import Generator
from prmkit.label.arithmetic import label_arithmetic
from prmkit.label.judge import default_template, label_judge
from prmkit.label.montecarlo import MonteCarlo, label_montecarlo
from prmkit.label.outcome import judge_for, label_outcome
from prmkit.records import Trajectory, loads

STRATEGIES = ("outcome", "arithmetic", "montecarlo", "judge")


def label_records(trajectories: list[Trajectory], out: str | os.PathLike, strategy: str,
                  generator: Generator | None = None, montecarlo: MonteCarlo = MonteCarlo(),
                  template: str | None = None, progress: bool = True) -> dict:
    """Label every record into ``out`` (JSONL), resuming from ``out.partial``. Returns counts:
    records, resumed (already in the partial file), rollouts (generator calls) spent, seconds.
    ``template``: the judge's prompt (the default when None)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy in ("montecarlo", "judge") and generator is None:
        raise ValueError(f"{strategy} labels need a generator")
    template = template or default_template()
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    done = _resume(partial, trajectories)
    started, rollouts = time.perf_counter(), 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(trajectories), initial=done, desc=f"label ({strategy})",
                   unit="record")
    with open(partial, "a", encoding="utf-8") as f:
        for i in range(done, len(trajectories)):
            t = trajectories[i]
            if strategy == "outcome":
                labelled = label_outcome(t)
            elif strategy == "arithmetic":
                labelled = label_arithmetic(t)
            elif strategy == "judge":
                labelled = label_judge(t, i, generator, template, montecarlo.seed)
                rollouts += len(labelled.meta["labeling"]["replies"])
            else:
                labelled = label_montecarlo(t, i, generator, judge_for(t), montecarlo)
                rollouts += labelled.meta["labeling"]["rollouts"]
            f.write(json.dumps(labelled.to_dict(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            if bar is not None:
                bar.update(1)
                seconds = time.perf_counter() - started
                bar.set_postfix(rollouts_per_s=f"{rollouts / max(seconds, 1e-9):.1f}")
    if bar is not None:
        bar.close()
    os.replace(partial, out)
    return {"records": len(trajectories), "resumed": done, "rollouts": rollouts,
            "seconds": round(time.perf_counter() - started, 2)}


def _resume(partial: Path, trajectories: list[Trajectory]) -> int:
    """How many records ``partial`` already holds, complete and in order; anything after the
    last complete line (a line cut by a crash) is cut off."""
    if not partial.exists():
        return 0
    keep, done = 0, 0
    with open(partial, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n") or done >= len(trajectories):
                break
            try:
                record = Trajectory.from_dict(loads(raw.decode("utf-8")))
            except Exception:  # noqa: BLE001 - a damaged line: label again from here
                break
            expected = trajectories[done]
            if record.question != expected.question or record.steps != expected.steps:
                break
            keep += len(raw)
            done += 1
    with open(partial, "r+b") as f:
        f.truncate(keep)
    return done

"""``prmkit label --compare``: each label source against the truth, on the demo world.

The world knows every step's true label, so each cheap source can be measured:

1. Label quality: every source labels the same training solutions; precision, recall and F1 on
   bad steps against the true labels (on the steps the truth labels: up to the first error),
   and the generator calls (rollouts) each spent.
2. Monte-Carlo by k: F1 and rollouts for k = 1, 2, 4, 8, 16 with the solver that wrote the
   solutions and with another rollout policy (a stronger solver), and the binary search beside
   the linear scan.
3. The effect of step-level supervision: one PRM per label source, trained on the same features
   (the default backbone), best-of-N on held-out pools against majority vote and random.

A predicted bad step is a label below 0.5 (a Monte-Carlo share below 0.5 for soft labels).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field, replace

import numpy as np

from prmkit import bestofn
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, default_cache_dir, embed_trajectories
from prmkit.generate.solver import NoisySolver, SolverGenerator, make_world
from prmkit.label.arithmetic import label_arithmetic
from prmkit.label.outcome import judge_for, label_outcome
from prmkit.label.montecarlo import MonteCarlo, label_montecarlo
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory, first_error_labels
from prmkit.report import curve_table, log_stage, table
from prmkit.scoring import HeadScorer, aggregate_all, precomputed
from prmkit.select import Pool
from prmkit.train import TrainConfig, train

SOURCES = ("outcome", "arithmetic", "Monte-Carlo hard", "Monte-Carlo soft",
           "Monte-Carlo binary", "true labels")


@dataclass
class CompareConfig:
    train_problems: int = 200
    train_pool: int = 8
    test_problems: int = 100
    test_pool: int = 16
    seed: int = 0
    k: int = 8  # rollouts per prefix for the sources that train PRMs
    ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    study_problems: int = 100  # training problems the k sweep labels
    other_strength: float = 1.0  # the other rollout policy: a stronger solver
    ns: tuple[int, ...] = (1, 4, 16)
    num_subsets: int = 200
    bootstrap: int = 2000
    head: dict = field(default_factory=lambda: {"hidden_size": 256, "num_layers": 2,
                                                "num_heads": 4})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=3e-4,
                                                                   patience=3))
    embed: EmbedConfig = field(default_factory=EmbedConfig)


def bad_step_scores(truth: list[Trajectory], labelled: list[Trajectory]) -> dict:
    """Precision, recall and F1 of "bad" (label < 0.5) against the true labels, on the steps
    the truth labels; a step the source leaves unlabelled counts as not flagged."""
    tp = fp = fn = 0
    for t, s in zip(truth, labelled):
        for y, p in zip(t.labels, s.labels):
            if y is None:
                continue
            flagged = p is not None and p < 0.5
            tp += flagged and y < 0.5
            fp += flagged and y >= 0.5
            fn += (not flagged) and y < 0.5
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "flagged": tp + fp,
            "bad": tp + fn}


def first_error_form(labelled: list[Trajectory]) -> list[Trajectory]:
    """Labels cut to the first-error rule: 1 before the first step labelled bad, 0 at it, None
    after (what a scan for the first bad step reports)."""
    out = []
    for t in labelled:
        first = next((i for i, y in enumerate(t.labels) if y is not None and y < 0.5), -1)
        labels = first_error_labels(t.num_steps, first)
        out.append(replace(t, labels=list(labels), meta=dict(t.meta)))
    return out


def label_with(source: str, data: list[Trajectory], generator, k: int, seed: int = 0
               ) -> tuple[list[Trajectory], int]:
    """The records labelled by one source, and the rollouts spent."""
    if source == "true labels":
        return data, 0
    if source == "outcome":
        return [label_outcome(t) for t in data], 0
    if source == "arithmetic":
        return [label_arithmetic(t) for t in data], 0
    config = MonteCarlo(k=k, seed=seed, **{"Monte-Carlo hard": {},
                                           "Monte-Carlo soft": {"estimate": "soft"},
                                           "Monte-Carlo binary": {"search": "binary"}}[source])
    out = [label_montecarlo(t, i, generator, judge_for(t), config) for i, t in enumerate(data)]
    return out, sum(t.meta["labeling"]["rollouts"] for t in out)


def run_compare(config: CompareConfig = CompareConfig(), cache_dir=None,
                progress: bool = True, device="cpu") -> dict:
    """Every label source against the truth on the demo world; the backbone on ``device``."""
    started = time.perf_counter()
    train_world = make_world(config.train_problems, config.train_pool, config.seed)
    seen = {p.problem.question for p in train_world}
    test_world = [p for p in make_world(config.test_problems, config.test_pool, config.seed + 1)
                  if p.problem.question not in seen]
    train_data = [t for p in train_world for t in p.trajectories]
    test_data = [t for p in test_world for t in p.trajectories]
    problems = [p.problem for p in train_world]
    same = SolverGenerator(problems)

    # 1. every source on the training solutions
    labelled, quality = {}, {}
    for source in SOURCES:
        labelled[source], rollouts = label_with(source, train_data, same, config.k,
                                                config.seed)
        quality[source] = {**bad_step_scores(train_data, labelled[source]),
                           "rollouts": rollouts}
    log_stage(f"labelled {len(train_data)} solutions with {len(SOURCES)} sources", started)

    # 2. Monte-Carlo by k, two rollout policies, linear and binary
    study = [t for p in train_world[:config.study_problems] for t in p.trajectories]
    other = SolverGenerator(problems, NoisySolver(strength=config.other_strength))
    by_k = {}
    for k in config.ks:
        row = {}
        for name, generator in (("same solver", same), ("stronger solver", other)):
            out, rollouts = label_with("Monte-Carlo hard", study, generator, k, config.seed)
            row[name] = {**bad_step_scores(study, out), "rollouts": rollouts}
            if generator is same:  # the same scan, read as a search for the first bad step
                row["same solver, linear scan to the first bad step"] = {
                    **bad_step_scores(study, first_error_form(out)), "rollouts": rollouts}
        out, rollouts = label_with("Monte-Carlo binary", study, same, k, config.seed)
        row["same solver, binary search"] = {**bad_step_scores(study, out),
                                             "rollouts": rollouts}
        by_k[str(k)] = row
    log_stage(f"Monte-Carlo swept over k = {list(config.ks)} on {len(study)} solutions", started)

    # 3. a PRM per source, on the same features; best-of-N on held-out pools
    backbone = Backbone(config.embed, device=device)
    cache = EmbeddingCache(cache_dir or default_cache_dir(), backbone.fingerprint,
                           backbone.source)
    features, _ = embed_trajectories(train_data + test_data, backbone, cache, progress=progress)
    train_x, test_x = features[:len(train_data)], features[len(train_data):]
    log_stage(f"embedded with {backbone.source}", started)
    scores = {}
    for source in SOURCES:
        with tempfile.TemporaryDirectory() as tmp:
            model_config = PRMConfig(input_dim=train_x[0].shape[1], **config.head)
            train(labelled[source], train_x, model_config,
                  replace(config.train, seed=config.seed), tmp, progress=False)
            scorer = HeadScorer(PRMHead.from_pretrained(tmp), precomputed(test_data, test_x))
            scores[source] = aggregate_all(scorer.score_batch(test_data), ("min",))["min"]
    log_stage("trained a PRM on each source", started)
    pools, start = [], 0
    for p in test_world:
        m = len(p.trajectories)
        pools.append(Pool(answers=[t.answer for t in p.trajectories],
                          correct=np.array([bool(t.outcome) for t in p.trajectories]),
                          lengths=np.array([t.num_steps for t in p.trajectories]),
                          scores={s: np.array(v[start:start + m]) for s, v in scores.items()}))
        start += m
    methods = {f"PRM on {s} (min)": ("prm", s) for s in SOURCES}
    methods.update({"majority vote": ("majority", None), "random": ("random", None)})
    curve = bestofn.best_of_n_curve(pools, methods, config.ns, config.num_subsets, config.seed)
    intervals = {n: bestofn.paired_bootstrap({m: curve[m][n] for m in curve}, config.bootstrap,
                                             config.seed) for n in config.ns}
    best_of_n = {name: {str(n): intervals[n][name] for n in config.ns} for name in curve}
    return {"config": {"train": len(train_data), "test": len(test_data),
                       "test_problems": len(test_world), "k": config.k,
                       "backbone": backbone.source, "other_strength": config.other_strength},
            "quality": quality, "by_k": by_k, "best_of_n": best_of_n,
            "seconds": round(time.perf_counter() - started, 1)}


def _f(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def markdown(r: dict) -> list[str]:
    c = r["config"]
    out = [f"## Label sources against the truth ({c['train']} demo-world solutions, k = {c['k']})",
           ""]
    out += table(["source", "precision", "recall", "F1 on bad steps", "rollouts"],
                 [[s, _f(q["precision"]), _f(q["recall"]), _f(q["f1"]), str(q["rollouts"])]
                  for s, q in r["quality"].items()])
    out += ["", "## Monte-Carlo by k (F1 on bad steps / rollouts)", ""]
    policies = list(next(iter(r["by_k"].values())))
    out += table(["k", *policies],
                 [[k, *[f"{_f(row[p]['f1'])} / {row[p]['rollouts']}" for p in policies]]
                  for k, row in r["by_k"].items()])
    ns = [int(n) for n in r["best_of_n"]["random"]]
    out += ["", f"## A PRM per label source: best-of-N on {c['test_problems']} held-out "
            f"problems (%, final answer right; backbone {c['backbone']})", ""]
    out += curve_table(r["best_of_n"], ns)
    return out

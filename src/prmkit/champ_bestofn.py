"""``prmkit demo --data champ``: best-of-N on real model solutions, CHAMP's pools.

The spec's central claim is that a PRM beats an ORM, which beats majority vote. The demo world
tests it on a simulation; this tests it on real outputs of GPT-3.5, GPT-4, PaLM 2 and Mixtral.

Reads top to bottom:
1. Data. CHAMP's 540 annotated solutions (a person marked the first wrong step) train the PRM.
   The pools are, per problem, the model solutions whose final answer could be judged
   (``load_champ_pools``); a problem takes part when at least ``min_pool`` are, and at most
   ``max_pool`` of them are kept (a seeded random choice, to bound the embedding time).
2. Features: the default backbone reads every step in context, through the cache.
3. Folds over problems: the pools of each held-out fold are scored by heads trained on the other
   folds' problems only: the PRM on their annotated solutions; the ORM on their pool solutions'
   judged outcomes (cheap labels, so the ORM sees about ten times the PRM's solutions); two
   content-free heads (length only, random features) on the PRM's data.
4. Each head is trained with the configured seeds (one by default); a problem's accuracy at N
   is averaged over them, with the demo's subset averaging; 95% intervals resample problems
   (paired across methods).
5. report.md, results.json and bestofn.png.

As in the demo, the verdict's methods are fixed in advance (``PRIMARY``) and the report says in
words how they compare with majority vote and the ORM, whatever that shows.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from prmkit import bestofn
from prmkit._io import atomic_open, write_json
from prmkit.baselines import length_features, random_features
from prmkit.data.champ import load_champ, load_champ_pools
from prmkit.data.pools import pool_stats
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, default_cache_dir, embed_trajectories
from prmkit.metrics import auroc
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.report import curve_table, log_stage, pct, plot_curves
from prmkit.scoring import HeadScorer, aggregate_all, precomputed
from prmkit.select import Pool
from prmkit.train import TrainConfig, train

PRIMARY = ("PRM (min)", "PRM-weighted majority (min)")
CONTENT_FREE = ("length only", "random features")


@dataclass
class ChampConfig:
    """Heads and training as in ``prmkit ablate --data champ`` (its plain run)."""

    folds: int = 5
    # one head per kind and fold by default: each fold's 12 heads took 7 minutes here with 3
    seeds: tuple[int, ...] = (0,)
    min_pool: int = 16  # judged candidates a problem needs to take part
    max_pool: int = 20  # judged candidates kept per problem (a seeded random choice)
    ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    num_subsets: int = 200
    bootstrap: int = 2000
    head: dict = field(default_factory=lambda: {"hidden_size": 256, "num_layers": 2,
                                                "num_heads": 4})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=3e-4,
                                                                   patience=3))
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    source: str = "v0"
    problems: tuple[str, ...] | None = None  # problem identifiers to use (all when None)

    def __post_init__(self):
        if self.folds < 2:
            raise ValueError("need at least 2 folds")
        if not self.seeds:
            raise ValueError("need at least one seed")
        if not 1 <= min(self.ns) <= max(self.ns) <= self.min_pool <= self.max_pool:
            raise ValueError(f"need 1 <= N <= min_pool ({self.min_pool}) <= max_pool "
                             f"({self.max_pool}) for every N")


def select_pools(pools: dict[str, list[Trajectory]], min_pool: int, max_pool: int,
                 seed: int = 0) -> dict[str, list[Trajectory]]:
    """Per problem, its judged candidates, for problems with at least ``min_pool`` of them; at
    most ``max_pool`` kept, a random choice fixed by ``seed`` and the problem, in pool order."""
    out = {}
    for pid in sorted(pools):
        judged = [t for t in pools[pid] if t.outcome is not None]
        if len(judged) < min_pool:
            continue
        if len(judged) > max_pool:
            rng = np.random.default_rng([seed, *pid.encode()])
            judged = [judged[i] for i in sorted(rng.choice(len(judged), max_pool,
                                                           replace=False))]
        out[pid] = judged
    return out


def problem_folds(problems: list[str], folds: int, seed: int = 0) -> list[set[str]]:
    """The problems in ``folds`` disjoint sets of near-equal size, shuffled by ``seed``."""
    order = [problems[i] for i in np.random.default_rng(seed).permutation(len(problems))]
    return [set(order[k::folds]) for k in range(folds)]


def _scores(train_data, train_x, score_data, score_x, head: dict, config: TrainConfig,
            target: str = "step") -> list[list[float]]:
    """Step probabilities of ``score_data`` from a head trained on ``train_data``."""
    with tempfile.TemporaryDirectory() as tmp:
        model_config = PRMConfig(input_dim=train_x[0].shape[1], target=target, **head)
        train(train_data, train_x, model_config, replace(config, target=target), tmp,
              progress=False)
        scorer = HeadScorer(PRMHead.from_pretrained(tmp), precomputed(score_data, score_x))
        return scorer.score_batch(score_data)


def run_champ(out_dir: str | Path, config: ChampConfig = ChampConfig(),
              cache_dir: str | Path | None = None, progress: bool = True,
              device="cpu") -> dict:
    """Run it, the backbone on ``device``; write report.md, results.json and bestofn.png to
    ``out_dir``."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1. Data: annotated solutions to train PRMs on; judged pools to choose from.
    annotated = load_champ(config.source, problems=config.problems)
    pools = select_pools(load_champ_pools(config.source, problems=config.problems),
                         config.min_pool, config.max_pool)
    problems = sorted(pools)
    candidates = [t for pid in problems for t in pools[pid]]
    log_stage(f"{len(annotated)} annotated solutions; {len(candidates)} judged candidates in "
         f"{len(problems)} problems with at least {config.min_pool}", started)

    # 2. Features, through the cache.
    backbone = Backbone(config.embed, device=device)
    cache = EmbeddingCache(cache_dir or default_cache_dir(), backbone.fingerprint,
                           backbone.source)
    features, embedding = embed_trajectories(annotated + candidates, backbone, cache,
                                             progress=progress)
    annotated_x, candidate_x = features[:len(annotated)], features[len(annotated):]
    log_stage(f"embedded ({embedding['computed']} trajectories computed)", started)

    # 3-4. Folds x seeds: every head trained on the other folds' problems.
    width = annotated_x[0].shape[1]
    content_free = {"length only": (length_features(annotated), length_features(candidates)),
                    "random features": (random_features(annotated, width, 0),
                                        random_features(candidates, width, 1))}
    heads = ("PRM", "ORM", *CONTENT_FREE)
    # head -> seed -> step probabilities per candidate / per annotated solution (held out)
    scored = {h: [[None] * len(candidates) for _ in config.seeds] for h in heads}
    held_out = {h: [[None] * len(annotated) for _ in config.seeds] for h in heads if h != "ORM"}
    # folds over the pools' problems, and apart over the rest (their annotated solutions train
    # the PRM, and are scored once held out, for step AUROC)
    others = sorted({t.meta["problem_id"] for t in annotated} - set(problems))
    folds = [a | b for a, b in zip(problem_folds(problems, config.folds),
                                   problem_folds(others, config.folds))]
    for k, fold in enumerate(folds):
        train_rows = [i for i, t in enumerate(annotated) if t.meta["problem_id"] not in fold]
        test_rows = [i for i, t in enumerate(annotated) if t.meta["problem_id"] in fold]
        orm_rows = [i for i, t in enumerate(candidates) if t.meta["problem_id"] not in fold]
        rows = [i for i, t in enumerate(candidates) if t.meta["problem_id"] in fold]
        for s, seed in enumerate(config.seeds):
            tc = replace(config.train, seed=seed)
            inputs = {"PRM": (annotated_x, candidate_x),
                      **{h: content_free[h] for h in CONTENT_FREE}}
            for h, (a_x, c_x) in inputs.items():
                probs = _scores([annotated[i] for i in train_rows], [a_x[i] for i in train_rows],
                                [annotated[i] for i in test_rows] + [candidates[i] for i in rows],
                                [a_x[i] for i in test_rows] + [c_x[i] for i in rows],
                                config.head, tc)
                for j, i in enumerate(test_rows):
                    held_out[h][s][i] = probs[j]
                for j, i in enumerate(rows):
                    scored[h][s][i] = probs[len(test_rows) + j]
            probs = _scores([candidates[i] for i in orm_rows], [candidate_x[i] for i in orm_rows],
                            [candidates[i] for i in rows], [candidate_x[i] for i in rows],
                            config.head, tc, target="outcome")
            for j, i in enumerate(rows):
                scored["ORM"][s][i] = probs[j]
        log_stage(f"fold {k + 1}/{config.folds}: {len(rows)} candidates held out, heads trained on "
             f"{len(train_rows)} annotated and {len(orm_rows)} pool solutions", started)

    # Step AUROC on the held-out annotated solutions, cross-fitted, per seed.
    gold = [(i, t, y) for i, traj in enumerate(annotated)
            for t, y in enumerate(traj.labels) if y is not None]
    step_auroc = {h: [auroc([probs[i][t] for i, t, _ in gold], [y for _, _, y in gold])
                      for probs in per_seed] for h, per_seed in held_out.items()}

    # 4. Best-of-N: per seed, the same subsets; per-problem accuracy averaged over seeds.
    methods = {f"PRM ({how})": ("prm", f"PRM/{how}") for how in ("min", "product", "last")}
    methods.update({
        "PRM-weighted majority (min)": ("weighted_majority", "PRM/min"),
        "ORM": ("prm", "ORM/last"),
        "ORM-weighted majority": ("weighted_majority", "ORM/last"),
        "majority vote": ("majority", None),
        "random": ("random", None),
        "longest": ("longest", None),
        "shortest": ("shortest", None),
        **{f"{h} (min)": ("prm", f"{h}/min") for h in CONTENT_FREE},
    })
    curves = []
    for s in range(len(config.seeds)):
        scores = {h: aggregate_all(scored[h][s], ("min", "product", "last")) for h in heads}
        start = 0
        pool_list = []
        for pid in problems:
            m = len(pools[pid])
            pool_list.append(Pool(
                answers=[t.answer for t in pools[pid]],
                correct=np.array([bool(t.outcome) for t in pools[pid]]),
                lengths=np.array([sum(len(x) for x in t.steps) for t in pools[pid]]),
                scores={f"{h}/{how}": np.array(v[start:start + m])
                        for h, by in scores.items() for how, v in by.items()}))
            start += m
        curves.append(bestofn.best_of_n_curve(pool_list, methods, config.ns,
                                              config.num_subsets, seed=0))
    curve = {name: {n: np.mean([c[name][n] for c in curves], axis=0) for n in config.ns}
             for name in curves[0]}
    n_max = max(config.ns)
    results = {
        "config": {**{k: v for k, v in asdict(config).items() if k not in ("train", "embed")},
                   "train": asdict(config.train), "backbone": backbone.source,
                   "features": backbone.config.features},
        "problems": len(problems), "candidates": len(candidates),
        "annotated": len(annotated), "embedding": embedding,
        "pool_stats": pool_stats([pools[pid] for pid in problems], k=n_max),
        "step_auroc": {h: _summary(v) for h, v in step_auroc.items()},
        "best_of_n": bestofn.curve_intervals(curve, config.ns, config.bootstrap, seed=0),
        "versus": {name: {other: bestofn.bootstrap_diff(curve[name][n_max], curve[other][n_max],
                                                         config.bootstrap, seed=0)
                          for other in ("majority vote", "ORM")}
                   for name in curve if name not in ("majority vote",)},
        "n_max": n_max,
    }
    log_stage("best-of-N evaluated", started)
    results["seconds"] = round(time.perf_counter() - started, 1)
    text = render_report(results)
    write_json(out_dir / "results.json", results)
    with atomic_open(out_dir / "report.md") as f:
        f.write(text)
    plotted = (*PRIMARY, "ORM", "majority vote", "random", "length only (min)", bestofn.ORACLE)
    plot_curves([(f"CHAMP: final answer right, {len(problems)} problems",
                  {name: {n: row[str(n)] for n in config.ns}
                   for name, row in results["best_of_n"].items() if name in plotted})],
                config.ns, out_dir / "bestofn.png",
                banded=(*PRIMARY, "majority vote", "ORM"))
    log_stage(f"wrote {out_dir / 'report.md'}, results.json and bestofn.png", started)
    results["report"] = text
    return results


def _summary(values: list[float]) -> dict:
    v = np.array(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
            "seeds": [float(x) for x in v]}


def render_report(r: dict) -> str:
    n = r["n_max"]
    ns = [int(x) for x in r["best_of_n"]["random"]]
    stats = r["pool_stats"]
    k = int(stats["k"])
    out = [f"# Best-of-N on CHAMP's real model solutions ({r['problems']} problems)", "",
           f"Pools: {r['candidates']} model solutions whose final answer could be judged, "
           f"{r['problems']} problems (at most {r['config']['max_pool']} per problem). "
           f"A sample is right {pct(stats['accuracy'])}% of the time; majority of {k} "
           f"{pct(stats['majority_at_k'])}%; pass@{k} {pct(stats['pass_at_k'])}%.",
           f"Heads: trained in {r['config']['folds']} folds over problems (no problem on both "
           f"sides), each with seeds {', '.join(map(str, r['config']['seeds']))}; the PRM on "
           f"{r['annotated']} "
           f"annotated solutions less the held-out fold's, the ORM on the other folds' pool "
           f"solutions and their judged outcomes. Backbone {r['config']['backbone']}, "
           f"features {r['config']['features']}.", "",
           "Step AUROC on the held-out annotated solutions (cross-fitted, mean over seeds): "
           + ", ".join(f"{h} {v['mean']:.3f}" for h, v in r["step_auroc"].items()) + ".", "",
           "## Accuracy at N (%, 95% intervals over problems)", ""]
    out += curve_table(r["best_of_n"], ns)
    out += ["", f"## At N = {n}: differences in points (95% paired intervals)", "",
            "| method | vs majority vote | vs ORM |", "|---|---|---|"]
    for name, d in r["versus"].items():
        if name == bestofn.ORACLE:
            continue
        out.append(f"| {name} | {_diff(d['majority vote'])} | "
                   f"{'' if name == 'ORM' else _diff(d['ORM'])} |")
    out += ["", "## Verdict", ""] + _verdict(r)
    return "\n".join(out) + "\n"


def _diff(d: dict) -> str:
    return f"{100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def _verdict(r: dict) -> list[str]:
    def says(name: str, other: str) -> str:
        d = r["versus"][name][other]
        if d["low"] > 0:
            return f"beats {other} by {_diff(d)} points"
        if d["high"] < 0:
            return f"loses to {other} by {_diff(d)} points"
        return f"does not differ from {other} measurably ({_diff(d)} points)"
    n = r["n_max"]
    lines = [f"- At N = {n}, {name} {says(name, 'majority vote')} and {says(name, 'ORM')}."
             for name in PRIMARY]
    lines.append(f"- The ORM {says('ORM', 'majority vote')}.")
    lines.append("- A head that sees only step lengths: "
                 f"{says('length only (min)', 'majority vote')}.")
    return lines

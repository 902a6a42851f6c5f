"""``prmkit ablate``: every training trick on and off, on the same data, over several seeds.

Reads top to bottom: data (the demo world by default, or a training file and a test file) →
embed once through the cache → for each seed, the plain head and one head per variant, each
scored through the ``Scorer`` interface on held-out data → paired differences against the plain
head of the same seed (step AUROC, first-error F1 at each head's saved threshold, ECE, best-of-N
at N where the test data form pools with known answers) → a table with 95% intervals over seeds.
A second table sets the linear head against the spec's transformer by training-set size.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace

import numpy as np

from prmkit.generate.solver import make_world
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, default_cache_dir, embed_trajectories
from prmkit.baselines import length_features, random_features
from prmkit.evaluate import best_of_n, split_metrics
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory, first_error, first_error_labels, normalize_question
from prmkit.report import table
from prmkit.scoring import HeadScorer, precomputed
from prmkit.train import TrainConfig, train

# name -> TrainConfig fields; "label policy: value" and "linear head" are handled apart
VARIANTS: dict[str, dict] = {
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "focal loss (gamma 2)": {"focal_gamma": 2.0},
    "balanced steps": {"balance": True},
    "length balancing": {"length_balance": True},
    "prefix augmentation": {"prefix_augment": True},
    "length curriculum": {"curriculum": True},
    "multi-task: outcome (alpha 0.5)": {"outcome_weight": 0.5},
    "multi-task: next step (beta 0.5)": {"next_step_weight": 0.5},
    "hard negatives (1 round)": {"hard_negative_rounds": 1},
    "ensemble of 3": {"ensemble": 3},
    "label policy: every later step wrong": {},
    "linear head": {},
}
METRICS = ("step_auroc", "first_error_f1", "ece", "best_of_n")
# two-sided 95% Student t quantiles by degrees of freedom (1..10); 1.96 beyond
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


@dataclass
class AblateConfig:
    """The demo world at a size where 5 seeds of 12 heads fit in about 15 minutes on 2 cores."""

    train_problems: int = 200
    train_pool: int = 8
    test_problems: int = 100
    test_pool: int = 24
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n: int = 16  # best-of-N at this N
    sizes: tuple[float, ...] = (0.25, 0.5, 1.0)  # shares of training questions, linear vs spec
    variants: tuple[str, ...] = tuple(VARIANTS)
    head: dict = field(default_factory=lambda: {"hidden_size": 256, "num_layers": 2,
                                                "num_heads": 4})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=3e-4,
                                                                   patience=3))
    embed: EmbedConfig = field(default_factory=EmbedConfig)

    def __post_init__(self):
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise ValueError(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
        if len(self.seeds) < 2:
            raise ValueError("an interval needs at least 2 seeds")
        if not all(0 < s <= 1 for s in self.sizes):
            raise ValueError("sizes are shares of the training questions, in (0, 1]")


def interval(values: list[float]) -> dict:
    """Mean, sd and the 95% t-interval of the mean (over seeds); NaNs dropped."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        mean = float(v.mean()) if len(v) else math.nan
        return {"mean": mean, "sd": math.nan, "low": math.nan, "high": math.nan, "n": len(v)}
    sd = float(v.std(ddof=1))
    half = (_T95[len(v) - 2] if len(v) - 1 <= len(_T95) else 1.96) * sd / math.sqrt(len(v))
    return {"mean": float(v.mean()), "sd": sd, "low": float(v.mean() - half),
            "high": float(v.mean() + half), "n": len(v)}


def value_policy(trajectories: list[Trajectory]) -> list[Trajectory]:
    """The same records with every step after a known first error labelled wrong."""
    out = []
    for t in trajectories:
        error = first_error(t)
        labels = t.labels
        if error is None:  # unlabelled after a first error that the labels still show
            error = next((i for i, y in enumerate(t.labels) if y is not None and y < 0.5), -1)
        if error >= 0:
            labels = first_error_labels(t.num_steps, error, "value")
        out.append(replace(t, labels=list(labels), meta=dict(t.meta)))
    return out


def _metrics(head: PRMHead, featurize, test: list[Trajectory], n: int) -> dict:
    scorer = HeadScorer(head, featurize)
    probs = scorer.score_batch(test)
    m = split_metrics(probs, test, scorer.threshold)
    out = {"step_auroc": m["step_auroc"], "first_error_f1": m.get("first_error_f1", math.nan),
           "ece": m["ece"], "best_of_n": math.nan}
    curve = best_of_n(test, {"PRM": probs}, ns=(n,))
    if curve is not None and curve["ns"] == [n]:
        out["best_of_n"] = curve["accuracy"][str(n)]["PRM (min)"]["mean"]
    return out


def _train_head(data, features, head: dict, config: TrainConfig) -> PRMHead:
    with tempfile.TemporaryDirectory() as tmp:
        model_config = PRMConfig(input_dim=features[0].shape[1], **head)
        train(data, features, model_config, config, tmp, progress=False)
        return PRMHead.from_pretrained(tmp)


def run_ablation(config: AblateConfig = AblateConfig(), train_data: list[Trajectory] | None = None,
                 test_data: list[Trajectory] | None = None, cache_dir=None,
                 progress: bool = True, log=print, device="cpu") -> dict:
    """Every variant and seed (the backbone on ``device``); returns per-run metrics, paired
    differences with intervals, and the size table."""
    if train_data is None:  # the demo world, held-out problems from another seed (as the demo)
        train_world = make_world(config.train_problems, config.train_pool, 0)
        seen = {p.problem.question for p in train_world}
        test_world = [p for p in make_world(config.test_problems, config.test_pool, 1)
                      if p.problem.question not in seen]
        train_data = [t for p in train_world for t in p.trajectories]
        test_data = [t for p in test_world for t in p.trajectories]
    backbone = Backbone(config.embed, device=device)
    cache = EmbeddingCache(cache_dir or default_cache_dir(), backbone.fingerprint,
                           backbone.source) if cache_dir is not False else None
    features, report = embed_trajectories(train_data + test_data, backbone, cache,
                                          progress=progress)
    log(f"embedded {report['trajectories']} trajectories ({report['computed']} computed)")
    train_x, test_x = features[:len(train_data)], features[len(train_data):]
    featurize = precomputed(test_data, test_x)
    policy_data = value_policy(train_data)
    runs: dict[str, list[dict]] = {"plain": []}
    content_free: dict[str, list[dict]] = {}
    for seed in config.seeds:
        base = replace(config.train, seed=seed)
        runs["plain"].append(_metrics(_train_head(train_data, train_x, config.head, base),
                                      featurize, test_data, config.n))
        # the same head on features that carry no content, to read the figures against
        width = train_x[0].shape[1]
        for name, (train_f, test_f) in {
                "length only": (length_features(train_data), length_features(test_data)),
                "random features": (random_features(train_data, width, seed),
                                    random_features(test_data, width, seed + 1000))}.items():
            head = _train_head(train_data, train_f, config.head, base)
            content_free.setdefault(name, []).append(
                _metrics(head, precomputed(test_data, test_f), test_data, config.n))
        for name in config.variants:
            data, head, tc = train_data, config.head, replace(base, **VARIANTS[name])
            if name == "label policy: every later step wrong":
                data = policy_data
            if name == "linear head":
                head = {**config.head, "head_type": "linear"}
            runs.setdefault(name, []).append(
                _metrics(_train_head(data, train_x, head, tc), featurize, test_data, config.n))
        log(f"seed {seed}: {len(config.variants) + 1} heads trained")
    diffs = {name: {m: interval([r[m] - p[m] for r, p in zip(runs[name], runs["plain"])])
                    for m in METRICS} for name in runs if name != "plain"}
    plain = {m: interval([r[m] for r in runs["plain"]]) for m in METRICS}
    baselines = {name: {m: interval([r[m] for r in rs]) for m in METRICS}
                 for name, rs in content_free.items()}
    sizes = _size_table(config, train_data, train_x, featurize, test_data, log)
    return {"config": {"train": len(train_data), "test": len(test_data), "seeds":
                       list(config.seeds), "n": config.n, "backbone": backbone.source,
                       "features": backbone.config.features},
            "runs": runs, "plain": plain, "baselines": baselines, "differences": diffs,
            "sizes": sizes}


def _size_table(config, train_data, train_x, featurize, test_data, log) -> dict:
    """Step AUROC of the linear and the spec's head when trained on a share of the questions."""
    questions = sorted({normalize_question(t.question) for t in train_data})
    out = {}
    for share in config.sizes:
        for seed in config.seeds:
            rng = np.random.default_rng(seed)
            keep = set(rng.permutation(questions)[:max(2, round(share * len(questions)))])
            rows = [i for i, t in enumerate(train_data) if normalize_question(t.question) in keep]
            data, feats = [train_data[i] for i in rows], [train_x[i] for i in rows]
            for kind in ("transformer", "linear"):
                head = _train_head(data, feats, {**config.head, "head_type": kind},
                                   replace(config.train, seed=seed))
                scores = _metrics(head, featurize, test_data, config.n)
                out.setdefault(f"{share:g}", {}).setdefault(kind, []).append(
                    scores["step_auroc"])
        log(f"size {share:g}: {len(rows)} training trajectories")
    return {share: {kind: interval(v) for kind, v in kinds.items()}
            for share, kinds in out.items()}


def _fmt(cell: dict, digits: int = 3) -> str:
    if not math.isfinite(cell["mean"]):
        return "n/a"
    if not math.isfinite(cell["low"]):
        return f"{cell['mean']:+.{digits}f}"
    return (f"{cell['mean']:+.{digits}f} ± {cell['sd']:.{digits}f} "
            f"[{cell['low']:+.{digits}f}, {cell['high']:+.{digits}f}]")


def markdown(results: dict) -> list[str]:
    c = results["config"]
    names = {"step_auroc": "step AUROC", "first_error_f1": "first-error F1", "ece": "ECE",
             "best_of_n": f"best-of-{c['n']} (PRM min)"}
    lines = [f"Trained on {c['train']} trajectories, tested on {c['test']}; {len(c['seeds'])} "
             f"seeds; backbone {c['backbone']} ({c['features']}). Plain head: " +
             ", ".join(f"{names[m]} {results['plain'][m]['mean']:.3f}" for m in METRICS) + ". " +
             "; ".join(f"The same head on {name}: " + ", ".join(
                 f"{names[m]} {cells[m]['mean']:.3f}" for m in METRICS)
                 for name, cells in results["baselines"].items()) + ".",
             "", "Difference from the plain head of the same seed: mean ± sd over seeds "
             "[95% interval]. ECE: lower is better.", ""]
    lines += table(["variant", *names.values()],
                   [[name, *(_fmt(d[m]) for m in METRICS)]
                    for name, d in results["differences"].items()])
    lines += ["", "Step AUROC by share of the training questions: the spec's transformer head "
              "against a linear head on the same features (mean ± sd).", ""]
    lines += table(["training share", "transformer", "linear"],
                   [[share, *(f"{kinds[k]['mean']:.3f} ± {kinds[k]['sd']:.3f}"
                              for k in ("transformer", "linear"))]
                    for share, kinds in results["sizes"].items()])
    return lines

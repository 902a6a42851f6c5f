"""``prmkit demo``: the whole loop on the embedded default, offline, in a few minutes on a CPU.

Reads top to bottom: generate the synthetic world (training pools and held-out pools) → embed
every step with the bundled encoder (cached) → train the PRM, the ORM and two content-free heads
(random features; step length only) → score every held-out candidate → best-of-N for each method
with paired bootstrap intervals → report (table, report.md, results.json, bestofn.png).

The numbers are the result: nothing here is tuned to make the PRM look good. The report says in
words whether the PRM beat majority vote and the ORM, with the paired interval of the difference.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prmkit import bestofn
from prmkit._io import atomic_open, write_json
from prmkit.aggregate import AGGREGATIONS
from prmkit.baselines import length_features, random_features
from prmkit.data import synthetic
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, default_cache_dir, embed_trajectories
from prmkit.metrics import auroc
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.scorer import aggregate_all, score_features
from prmkit.select import Pool
from prmkit.train import TrainConfig, train


@dataclass
class DemoConfig:
    train_problems: int = 300
    train_pool: int = 8
    test_problems: int = 300
    test_pool: int = 64
    ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    seed: int = 0
    num_subsets: int = 200
    bootstrap: int = 2000
    # A smaller head than the spec's 512 x 4: the demo must train four heads in seconds on 2 cores.
    head: dict = field(default_factory=lambda: {"hidden_size": 128, "num_layers": 2,
                                                "num_heads": 4, "dropout": 0.1})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=12, batch_size=64, lr=1e-3, patience=3, val_fraction=0.1))
    # Each step embedded on its own: per-prefix contexts over 300 x 64 candidates would cost
    # ~10M encoder tokens (about an hour on 2 cores); distinct steps cost ~0.5M.
    embed: EmbedConfig = field(default_factory=lambda: EmbedConfig(context="none"))

    def __post_init__(self):
        if min(self.ns) < 1 or max(self.ns) > self.test_pool:
            raise ValueError(f"every N must be in [1, test_pool={self.test_pool}]")
        if self.train_problems < 2 or self.test_problems < 1:
            raise ValueError("need at least 2 training problems and 1 held-out problem")


PRM_AGGREGATIONS = ("product", "min", "mean", "last", "sum")
# The verdict's PRM method, fixed in advance: min, the weakest step, as in Math-Shepherd.
PRIMARY = "PRM (min)"
CONTENT_FREE = ("random features", "length only")


def _log(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def run_demo(out_dir: str | Path, config: DemoConfig = DemoConfig(),
             cache_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Run the demo; write report.md, results.json and bestofn.png to ``out_dir``."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1. The world: held-out problems come from another seed, and any question that also
    #    appears in training is dropped from the held-out set.
    train_world = synthetic.make_world(config.train_problems, config.train_pool, config.seed)
    test_world = synthetic.make_world(config.test_problems, config.test_pool, config.seed + 1)
    seen = {p.problem.question for p in train_world}
    test_world = [p for p in test_world if p.problem.question not in seen]
    train_data = [t for p in train_world for t in p.trajectories]
    test_data = [t for p in test_world for t in p.trajectories]
    world_stats = synthetic.pool_stats(test_world)
    _log(f"world: {len(train_data)} training candidates for {len(train_world)} problems, "
         f"{len(test_data)} held-out candidates for {len(test_world)} problems", started)

    # 2. Step embeddings, through the cache.
    backbone = Backbone(config.embed)
    cache = EmbeddingCache(cache_dir or default_cache_dir(), backbone.fingerprint)
    features, embed_report = embed_trajectories(train_data + test_data, backbone, cache,
                                                progress=progress)
    train_feats, test_feats = features[:len(train_data)], features[len(train_data):]
    _log(f"embedded {embed_report['steps']} steps ({embed_report['computed']} solutions computed, "
         f"{embed_report['cached']} from the cache)", started)

    # 3. Four heads, one recipe: the PRM, the ORM, and the two content-free baselines.
    feature_sets = {
        "PRM": (train_feats, test_feats, "step"),
        "ORM": (train_feats, test_feats, "outcome"),
        "random features": (random_features(train_data, backbone.hidden_size, config.seed),
                            random_features(test_data, backbone.hidden_size, config.seed + 1),
                            "step"),
        "length only": (length_features(train_data), length_features(test_data), "step"),
    }
    step_probs, summaries = {}, {}
    for name, (train_x, test_x, target) in feature_sets.items():
        model_config = PRMConfig(input_dim=train_x[0].shape[1], target=target,
                                 embed=asdict(backbone.config),
                                 backbone_fingerprint=backbone.fingerprint if name in ("PRM", "ORM")
                                 else {"features": name}, **config.head)
        train_config = TrainConfig(**{**asdict(config.train), "target": target,
                                      "seed": config.seed})
        folder = out_dir / "models" / name.replace(" ", "-").lower()
        summaries[name] = train(train_data, train_x, model_config, train_config, folder,
                                progress=progress, overwrite=True)
        head = PRMHead.from_pretrained(folder)
        step_probs[name] = score_features(head, test_x)
        _log(f"trained {name} head (best epoch {summaries[name]['best_epoch']})", started)

    # 4. Step-level quality on held-out labelled steps, every head beside the content-free ones.
    gold = [(i, t, label) for i, traj in enumerate(test_data)
            for t, label in enumerate(traj.labels) if label is not None]
    step_auroc = {name: auroc([probs[i][t] for i, t, _ in gold], [label for _, _, label in gold])
                  for name, probs in step_probs.items() if name != "ORM"}

    # 5. Best-of-N.
    scores = {name: aggregate_all(probs, AGGREGATIONS) for name, probs in step_probs.items()}
    pools = _select_pools(test_world, test_data, scores)
    methods = {f"PRM ({how})": ("prm", f"PRM/{how}") for how in PRM_AGGREGATIONS}
    methods.update({
        "PRM-weighted majority (min)": ("weighted_majority", "PRM/min"),
        "ORM": ("prm", "ORM/last"),
        "majority vote": ("majority", None),
        "random": ("random", None),
        "longest": ("longest", None),
        "shortest": ("shortest", None),
        "random-feature head (min)": ("prm", "random features/min"),
        "length-only head (min)": ("prm", "length only/min"),
    })
    curve = bestofn.best_of_n_curve(pools, methods, config.ns, config.num_subsets, config.seed)
    intervals = {n: bestofn.paired_bootstrap({name: curve[name][n] for name in curve},
                                             config.bootstrap, config.seed) for n in config.ns}
    table = {name: {n: intervals[n][name] for n in config.ns} for name in curve}
    difficulty = np.array([p.problem.difficulty for p in test_world])
    buckets = np.array([_bucket(d) for d in difficulty])
    n_max = max(config.ns)
    by_difficulty = {name: bestofn.group_mean(curve[name][n_max], buckets) for name in curve}
    bucket_sizes = {b: int((buckets == b).sum()) for b in sorted(set(buckets))}
    comparisons = {other: bestofn.bootstrap_diff(curve[PRIMARY][n_max], curve[other][n_max],
                                                 config.bootstrap, config.seed)
                   for other in ("majority vote", "ORM", "longest", "length-only head (min)",
                                 "random")}
    _log("best-of-N evaluated", started)

    results = {
        "config": {**asdict(config), "embed": asdict(config.embed), "train": asdict(config.train)},
        "world_stats": world_stats, "real_ranges": synthetic.REAL_RANGES,
        "embedding": embed_report, "training": summaries, "step_auroc": step_auroc,
        "best_of_n": {name: {str(n): v for n, v in row.items()} for name, row in table.items()},
        "by_difficulty": {name: {str(k): v for k, v in row.items()}
                          for name, row in by_difficulty.items()},
        "difficulty_buckets": bucket_sizes, "primary": PRIMARY,
        "primary_vs": comparisons, "n_max": n_max,
        "test_problems": len(test_world), "test_pool": config.test_pool,
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    text = render_report(results)
    write_json(out_dir / "results.json", results)
    with atomic_open(out_dir / "report.md") as f:
        f.write(text)
    plot_curves(table, config.ns, out_dir / "bestofn.png",
                banded=(PRIMARY, "majority vote", "ORM", "random", bestofn.ORACLE))
    _log(f"wrote {out_dir / 'report.md'}, results.json and bestofn.png", started)
    results["report"] = text
    return results


def _select_pools(world: list[synthetic.ProblemPool], data: list[Trajectory],
                  scores: dict[str, dict[str, list[float]]]) -> list[Pool]:
    """One selection ``Pool`` per problem: answers, correctness, lengths and every method's
    scores of its candidates (``data`` holds the world's candidates in order)."""
    pools, start = [], 0
    for pool in world:
        m = len(pool.trajectories)
        rows = data[start:start + m]
        named = {f"{head}/{how}": np.asarray(values[start:start + m], dtype=np.float64)
                 for head, by_how in scores.items() for how, values in by_how.items()}
        pools.append(Pool(answers=[t.answer for t in rows],
                          correct=np.array([bool(t.outcome) for t in rows]),
                          lengths=np.array([t.num_steps for t in rows]), scores=named))
        start += m
    return pools


def _bucket(steps: int) -> str:
    return "2-3 steps" if steps <= 3 else "4-5 steps" if steps <= 5 else "6+ steps"


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}"


def render_report(r: dict) -> str:
    ns = r["config"]["ns"]
    n_max = r["n_max"]
    lines = ["# prmkit demo: best-of-N on the synthetic world", ""]
    lines += [f"{r['test_problems']} held-out problems, pools of {r['test_pool']} candidates; "
              f"accuracy at N averaged over random N-subsets of each pool; 95% intervals from a "
              f"paired bootstrap over problems. Finished in {r['seconds']:.0f} s.", ""]
    lines += ["## Best-of-N accuracy (%)", "",
              "| method | " + " | ".join(f"N={n}" for n in ns) + " |",
              "|---|" + "---|" * len(ns)]
    for name, row in r["best_of_n"].items():
        cells = [f"{_pct(row[str(n)]['mean'])} [{_pct(row[str(n)]['low']).strip()}, "
                 f"{_pct(row[str(n)]['high']).strip()}]" for n in ns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    buckets = list(r["difficulty_buckets"])
    lines += ["", f"## By difficulty, N={n_max} (%)", "",
              "| method | " + " | ".join(f"{b} ({r['difficulty_buckets'][b]})" for b in buckets)
              + " |", "|---|" + "---|" * len(buckets)]
    for name, row in r["by_difficulty"].items():
        lines.append(f"| {name} | " + " | ".join(_pct(row[b]) for b in buckets) + " |")
    lines += ["", "## Step-level AUROC on held-out labelled steps", "",
              "| head | step AUROC |", "|---|---|"]
    for name, value in r["step_auroc"].items():
        lines.append(f"| {name} | {value:.3f} |")
    lines += ["", "## Verdict", ""]
    best = r["primary"]
    lines.append(f"{best} is the PRM method fixed before looking at results (choosing the best "
                 "aggregation on these held-out problems would bias the verdict).")
    lines.append("")
    for other, d in r["primary_vs"].items():
        verdict = ("beats" if d["low"] > 0 else "loses to" if d["high"] < 0 else
                   "is not distinguishable from")
        lines.append(f"- At N={n_max}, {best} {verdict} {other}: difference "
                     f"{100 * d['mean']:+.1f} points [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}].")
    lines += ["", "## Why", ""] + _explain(r)
    lines += ["", "## The world beside real pools (CHAMP: GPT-3.5, GPT-4, GPT-4 Turbo, PaLM 2)", "",
              "```"] + synthetic.format_comparison(r["world_stats"]) + ["```", ""]
    e = r["embedding"]
    lines += ["## How this was run", "",
              f"- Encoder: bundled all-MiniLM-L6-v2, each step embedded on its own "
              f"(context='none'); {e['steps']} steps, {e['computed']} solutions computed, "
              f"{e['cached']} from the cache.",
              f"- Heads: {r['config']['head']}; training {r['config']['train']}.",
              "- Content-free baselines: the same head trained on random features, and on step "
              "length only (characters, words).", ""]
    return "\n".join(lines)


def _explain(r: dict) -> list[str]:
    """What the numbers say, in words, decided by the numbers themselves."""
    n_max, rows = r["n_max"], r["best_of_n"]
    at = lambda name: rows[name][str(n_max)]["mean"]
    prm_auc, len_auc = r["step_auroc"]["PRM"], r["step_auroc"]["length only"]
    rand_auc = r["step_auroc"]["random features"]
    out = []
    if prm_auc <= len_auc + 0.02:
        out.append(f"- The PRM's step AUROC ({prm_auc:.3f}) is within 0.02 of the length-only "
                   f"head's ({len_auc:.3f}) (random features: {rand_auc:.3f}): it has learned "
                   "little beyond step length and position. The demo embeds each step on its "
                   "own with a sentence encoder, and such a vector barely changes when "
                   "`80 - 46 = 34` becomes `80 - 46 = 36`, so the content that decides the label "
                   "is not in the features. We expect (not shown here) that a backbone that "
                   "reads each step in context, such as a causal LM in one pass, is needed for "
                   "real gains.")
    else:
        out.append(f"- The PRM's step AUROC ({prm_auc:.3f}) is above the length-only head's "
                   f"({len_auc:.3f}) and the random-feature head's ({rand_auc:.3f}): it uses "
                   "step content, not only length.")
    if abs(at("PRM (sum)") - at("longest")) < 0.03 and at("PRM (sum)") > at("PRM (min)"):
        out.append(f"- PRM (sum) ({100 * at('PRM (sum)'):.1f}%) tracks 'longest' "
                   f"({100 * at('longest'):.1f}%): a sum of probabilities grows with the number "
                   "of steps, and in this world longer solutions are more often right (a skipped "
                   "step is an error). It is a length effect, not verification.")
    best_how = max((m for m in rows if m.startswith("PRM (")), key=at)
    if at("majority vote") >= at(best_how) - 0.01:
        out.append(f"- Majority vote ({100 * at('majority vote'):.1f}%) is at least as good as "
                   f"every PRM aggregation here (best: {best_how}, {100 * at(best_how):.1f}%), "
                   "despite clustered wrong answers.")
    if at("ORM") < at("random") + 0.02:
        out.append(f"- The ORM ({100 * at('ORM'):.1f}%) is no better than random "
                   f"({100 * at('random'):.1f}%): the last step's vector does not tell a right "
                   "final answer from a wrong one either.")
    return out


def plot_curves(table: dict, ns, path: Path, banded: tuple[str, ...] = ()) -> None:
    """Accuracy vs N, one line per method; 95% bands for the ``banded`` methods only (fourteen
    overlapping bands would hide every line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = plt.get_cmap("tab20").colors
    for k, (name, row) in enumerate(table.items()):
        mean = [row[n]["mean"] for n in ns]
        style = "--" if name in ("oracle", "random", "longest", "shortest") else "-"
        color = colors[(2 * k) % 20 + (2 * k) // 20]  # the saturated tab20 colours first
        ax.plot(ns, mean, style, marker="o", label=name, linewidth=1.5, color=color)
        if name in banded:
            ax.fill_between(ns, [row[n]["low"] for n in ns], [row[n]["high"] for n in ns],
                            alpha=0.12, color=color)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ns), [str(n) for n in ns])
    ax.set_xlabel("N (candidates per problem)")
    ax.set_ylabel("accuracy")
    ax.set_title("Best-of-N on held-out synthetic problems (95% bands for some methods)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)

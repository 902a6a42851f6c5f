"""End-to-end jobs behind the CLI: each command calls one function here."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from prmkit.scoring.aggregate import AGGREGATIONS
from prmkit.baselines import length_features, random_features
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, default_cache_dir, embed_trajectories
from prmkit.errors import DataError, PrmkitError
from prmkit.model import PRMConfig
from prmkit.records import Location, Trajectory, read_jsonl_located
from prmkit.scoring import PRM, aggregate_all
from prmkit.train import TrainConfig, check_out_dir, train
from prmkit._io import atomic_open, check_output, file_lock

PathLike = str | os.PathLike


def _trajectories(data: PathLike | list[Trajectory], format: str = "jsonl"
                  ) -> tuple[list[Trajectory], list[Location] | None]:
    """Records, and the (file, line) of each when they come from a JSONL file of records.
    ``format`` names any adapter (``prmkit.data.formats``); its reader names file and line of
    whatever it refuses."""
    if isinstance(data, list):
        return data, None
    if format == "jsonl":
        return read_jsonl_located(data)
    from prmkit.data import formats

    return formats.load(format, data), None


def record_id(t: Trajectory) -> str:
    """A record's id: ``meta["id"]`` when it has one, else a hash of its question (the same for
    every candidate solution of one question)."""
    if isinstance(t.meta.get("id"), (str, int)) and not isinstance(t.meta.get("id"), bool):
        return str(t.meta["id"])
    return "q-" + hashlib.sha256(t.question.encode("utf-8")).hexdigest()[:16]


def check_steps(trajectories: list[Trajectory], locations: list[Location] | None,
                max_steps: int, hint: str) -> None:
    """Refuse, before any embedding, a trajectory longer than a head takes, by file and line (or
    by index in a list)."""
    for i, t in enumerate(trajectories):
        if t.num_steps > max_steps:
            path, line = locations[i] if locations else (None, None)
            raise DataError(f"{t.num_steps} steps, more than max_steps={max_steps}; {hint}",
                            path=path, line=line, field="steps" if locations else f"[{i}].steps")


def _inputs(data, *more: PathLike) -> list[PathLike]:
    """The input files of a job, which no output may replace."""
    paths = [] if isinstance(data, list) else [data]
    for folder in more:
        paths += list(Path(folder).iterdir()) if Path(folder).is_dir() else [folder]
    return paths


def _cache(backbone: Backbone, cache_dir: PathLike | None | bool) -> EmbeddingCache | None:
    """``cache_dir``: a folder, None for the default folder, or False for no cache."""
    if cache_dir is False:
        return None
    return EmbeddingCache(cache_dir or default_cache_dir(), backbone.fingerprint,
                          backbone.source)


def embed_data(data: PathLike | list[Trajectory], embed: EmbedConfig = EmbedConfig(),
               cache_dir: PathLike | None = None, progress: bool = True,
               shard_trajectories: int = 2048, locations: list[Location] | None = None,
               format: str = "jsonl"):
    """Embed (and cache) every step of a data set. Returns (backbone, features, report).

    Each shard of ``shard_trajectories`` is written as soon as it is done, so an interrupted run
    started again recomputes nothing already written."""
    trajectories, found = _trajectories(data, format)
    backbone = Backbone(embed)
    features, report = embed_trajectories(trajectories, backbone, _cache(backbone, cache_dir),
                                          progress=progress, shard_trajectories=shard_trajectories,
                                          locations=found or locations)
    return backbone, features, report


def compare_layers(data: PathLike | list[Trajectory], embed: EmbedConfig, layers: list[int],
                   cache_dir: PathLike | None = None, head: dict | None = None,
                   config: TrainConfig = TrainConfig(epochs=10, lr=1e-3, patience=3,
                                                     val_fraction=0.2),
                   seeds: tuple[int, ...] = (0, 1, 2, 3, 4), progress: bool = True,
                   format: str = "jsonl") -> list[dict]:
    """Which layer of the backbone serves a PRM best: read every layer in one pass (cached),
    train a small head on each layer's vectors with each seed (each seed draws its own question
    split), and report validation step AUROC, mean and spread over seeds: one seed is noise.
    Hidden states only (``embed.features`` is ignored): the pass stops at the deepest layer."""
    trajectories, locations = _trajectories(data, format)
    head = head or {"hidden_size": 128, "num_layers": 2, "num_heads": 4}
    # One pass reads every layer (their vectors side by side); each layer's slice is then scored.
    backbone = Backbone(replace(embed, layer=tuple(layers), features="hidden"))
    features, _ = embed_trajectories(trajectories, backbone, _cache(backbone, cache_dir),
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
              keep_checkpoint: bool = False, format: str = "jsonl") -> dict:
    """Embed the data (through the cache), train a head on it, save it to ``out_dir``.

    ``head`` overrides ``PRMConfig`` fields (hidden_size, num_layers, num_heads, dropout,
    max_steps, causal). ``out_dir`` is checked and locked before any embedding; a model already
    there is replaced only with ``overwrite`` (``train``). Returns the training summary, with the
    embedding report under "embedding".
    """
    out_dir = check_output(out_dir, _inputs(data), folder=True)
    check_out_dir(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(out_dir, wait=False, busy="another prmkit train is writing there"):
        return _train_prm(data, out_dir, embed, head, config, cache_dir, progress, overwrite,
                          keep_checkpoint, format)


def _train_prm(data, out_dir, embed, head, config, cache_dir, progress, overwrite,
               keep_checkpoint, format) -> dict:
    trajectories, locations = _trajectories(data, format)
    head = dict(head or {})
    try:  # check the head's settings now, not after an embedding run that may take an hour
        max_steps = PRMConfig(input_dim=1, **head).max_steps
    except ValueError as e:
        raise PrmkitError(str(e)) from None
    check_steps(trajectories, locations, max_steps, "raise max_steps (--max-steps) or split it")
    backbone, features, report = embed_data(trajectories, embed, cache_dir, progress,
                                            locations=locations)
    model_config = PRMConfig(input_dim=backbone.hidden_size, target=config.target,
                             embed=asdict(backbone.config),
                             backbone_fingerprint=backbone.fingerprint,
                             backbone_path=backbone.source if os.path.isabs(backbone.source)
                             else None, **head)
    summary = train(trajectories, features, model_config, config, out_dir, progress=progress,
                    overwrite=overwrite, keep_checkpoint=keep_checkpoint)
    return {**summary, "embedding": report, "out": str(out_dir)}


def score_data(model_dir: PathLike, data: PathLike | list[Trajectory],
               out: PathLike | None = None, cache_dir: PathLike | None = None,
               batch_size: int = 64, progress: bool = True,
               overwrite: bool = False, format: str = "jsonl") -> tuple[list[dict], dict]:
    """Per-step probabilities and every aggregate for each trajectory.

    Returns (rows, embedding report); with ``out``, the rows are also written as JSONL (an
    existing file is replaced only with ``overwrite``).
    """
    if out is not None:
        check_output(out, _inputs(data, model_dir), overwrite)
    trajectories, locations = _trajectories(data, format)
    prm = PRM.from_pretrained(model_dir, batch_size=batch_size)
    check_steps(trajectories, locations, prm.head.config.max_steps,
                "this model cannot score it: split the solution")
    prm.cache = _cache(prm.backbone, cache_dir)
    step_probs = prm.score_batch(trajectories, progress=progress, locations=locations)
    scores = aggregate_all(step_probs, tuple(AGGREGATIONS))
    rows = [{"index": i, "id": record_id(trajectories[i]), "step_probs": probs,
             "scores": {name: values[i] for name, values in scores.items()}}
            for i, probs in enumerate(step_probs)]
    if out is not None:
        import json

        with atomic_open(Path(out)) as f:
            for row in rows:
                f.write(json.dumps(row, allow_nan=False) + "\n")
    return rows, prm.last_embed_report

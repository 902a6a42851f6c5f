"""End-to-end jobs behind the CLI: each command calls one function here."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from prmkit.aggregate import AGGREGATIONS
from prmkit.baselines import length_features, random_features
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, default_cache_dir, embed_trajectories
from prmkit.errors import DataError, PrmkitError
from prmkit.model import PRMConfig
from prmkit.records import Location, Trajectory, read_jsonl_located
from prmkit.scorer import PRM, aggregate_all
from prmkit.train import TrainConfig, train
from prmkit._io import atomic_open

PathLike = str | os.PathLike


def _trajectories(data: PathLike | list[Trajectory]) -> tuple[list[Trajectory],
                                                               list[Location] | None]:
    """Records, and the (file, line) of each when they come from a file."""
    return (data, None) if isinstance(data, list) else read_jsonl_located(data)


def _cache(backbone: Backbone, cache_dir: PathLike | None | bool) -> EmbeddingCache | None:
    """``cache_dir``: a folder, None for the default folder, or False for no cache."""
    if cache_dir is False:
        return None
    return EmbeddingCache(cache_dir or default_cache_dir(), backbone.fingerprint)


def embed_data(data: PathLike | list[Trajectory], embed: EmbedConfig = EmbedConfig(),
               cache_dir: PathLike | None = None, progress: bool = True,
               shard_trajectories: int = 2048, locations: list[Location] | None = None):
    """Embed (and cache) every step of a data set. Returns (backbone, features, report).

    Each shard of ``shard_trajectories`` is written as soon as it is done, so an interrupted run
    started again recomputes nothing already written."""
    trajectories, found = _trajectories(data)
    backbone = Backbone(embed)
    features, report = embed_trajectories(trajectories, backbone, _cache(backbone, cache_dir),
                                          progress=progress, shard_trajectories=shard_trajectories,
                                          locations=found or locations)
    return backbone, features, report


def compare_layers(data: PathLike | list[Trajectory], embed: EmbedConfig, layers: list[int],
                   cache_dir: PathLike | None = None, head: dict | None = None,
                   config: TrainConfig = TrainConfig(epochs=10, lr=1e-3, patience=3,
                                                     val_fraction=0.2),
                   seeds: tuple[int, ...] = (0, 1, 2, 3, 4), progress: bool = True) -> list[dict]:
    """Which layer of the backbone serves a PRM best: read every layer in one pass (cached),
    train a small head on each layer's vectors with each seed (each seed draws its own question
    split), and report validation step AUROC, mean and spread over seeds: one seed is noise.
    Hidden states only (``embed.features`` is ignored): the pass stops at the deepest layer."""
    trajectories, locations = _trajectories(data)
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
              progress: bool = True, overwrite: bool = False) -> dict:
    """Embed the data (through the cache), train a head on it, save it to ``out_dir``.

    ``head`` overrides ``PRMConfig`` fields (hidden_size, num_layers, num_heads, dropout,
    max_steps, causal). Returns the training summary, with the embedding report under "embedding".
    """
    trajectories, locations = _trajectories(data)
    head = dict(head or {})
    try:  # check the head's settings now, not after an embedding run that may take an hour
        max_steps = PRMConfig(input_dim=1, **head).max_steps
    except ValueError as e:
        raise PrmkitError(str(e)) from None
    for i, t in enumerate(trajectories):
        if t.num_steps > max_steps:
            raise DataError(f"trajectory {i} has {t.num_steps} steps, more than max_steps="
                            f"{max_steps}; raise --max-steps or split it", field="steps")
    backbone, features, report = embed_data(trajectories, embed, cache_dir, progress,
                                            locations=locations)
    model_config = PRMConfig(input_dim=backbone.hidden_size, target=config.target,
                             embed=asdict(backbone.config),
                             backbone_fingerprint=backbone.fingerprint, **head)
    summary = train(trajectories, features, model_config, config, out_dir, progress=progress,
                    overwrite=overwrite)
    return {**summary, "embedding": report, "out": str(out_dir)}


def score_data(model_dir: PathLike, data: PathLike | list[Trajectory],
               out: PathLike | None = None, cache_dir: PathLike | None = None,
               batch_size: int = 64, progress: bool = True) -> tuple[list[dict], dict]:
    """Per-step probabilities and every aggregate for each trajectory.

    Returns (rows, embedding report); with ``out``, the rows are also written as JSONL.
    """
    trajectories, locations = _trajectories(data)
    prm = PRM.from_pretrained(model_dir, batch_size=batch_size)
    prm.cache = _cache(prm.backbone, cache_dir)
    step_probs = prm.score_batch(trajectories, progress=progress, locations=locations)
    scores = aggregate_all(step_probs, tuple(AGGREGATIONS))
    rows = [{"index": i, "step_probs": probs,
             "scores": {name: values[i] for name, values in scores.items()}}
            for i, probs in enumerate(step_probs)]
    if out is not None:
        import json

        with atomic_open(Path(out)) as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return rows, prm.last_embed_report

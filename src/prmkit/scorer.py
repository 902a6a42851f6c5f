"""The one scorer interface: ``score(question, steps) -> list[float]``.

Best-of-N, search, evaluation and serving call only this (or its batched form). A ``PRM`` joins a
backbone (text → step embeddings, through the cache) and a trained head (embeddings → logits).
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from prmkit.aggregate import AGGREGATIONS, aggregate
from prmkit.batch import collate
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, embed_trajectories
from prmkit.model import PRMHead, read_config
from prmkit.errors import PrmkitError
from prmkit.hub import model_folder, push_to_hub
from prmkit.records import Location, Trajectory

StepScores = list[float]


class PRM:
    """A trained head with its backbone. ``probs`` are P(step correct | question, steps <= t)."""

    def __init__(self, head: PRMHead, backbone: Backbone, cache: EmbeddingCache | None = None,
                 batch_size: int = 64):
        self.head, self.backbone, self.cache, self.batch_size = head.eval(), backbone, cache, batch_size
        self.last_embed_report: dict | None = None

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                        batch_size: int = 64, revision: str | None = None) -> "PRM":
        """Load a head saved by ``prmkit train`` (a folder, or a hub id such as
        ``org/my-prm``) and the backbone it names.

        The backbone is rebuilt from the saved embed settings and its fingerprint (weights hash,
        pooling, layer, dtype, ...) must equal the one the head was trained on.
        """
        directory = model_folder(directory, revision)
        config = read_config(directory)
        embed = EmbedConfig(**config.embed)
        if config.backbone_path:  # trained on a local folder: found wherever we run from
            if not os.path.isdir(config.backbone_path):
                raise PrmkitError(f"{directory} was trained on the backbone folder "
                                  f"{config.backbone_path}, which no longer exists")
            embed = replace(embed, backbone=config.backbone_path)
        backbone = Backbone(embed)
        head = PRMHead.from_pretrained(directory, backbone_fingerprint=backbone.fingerprint)
        cache = (EmbeddingCache(cache_dir, backbone.fingerprint, backbone.source)
                 if cache_dir is not None else None)
        return cls(head, backbone, cache, batch_size)

    def push_to_hub(self, repo_id: str, token: str | None = None,
                    private: bool | None = None) -> str:
        """Upload the head (weights, config naming the backbone) to the hub; returns the commit
        URL. ``PRM.from_pretrained(repo_id)`` loads it back wherever the backbone is found."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            self.head.save_pretrained(tmp)
            return push_to_hub(tmp, repo_id, token=token, private=private)

    def score(self, question: str, steps: list[str]) -> StepScores:
        """Per-step probabilities for one solution."""
        return self.score_batch([Trajectory(question=question, steps=list(steps))])[0]

    def score_batch(self, trajectories: list[Trajectory], progress: bool = False,
                    locations: list[Location] | None = None) -> list[StepScores]:
        features, self.last_embed_report = embed_trajectories(
            trajectories, self.backbone, self.cache, progress=progress, locations=locations)
        return self.score_features(features)

    def score_features(self, features: list[np.ndarray]) -> list[StepScores]:
        return score_features(self.head, features, self.batch_size)


@torch.no_grad()
def score_features(head: PRMHead, features: list[np.ndarray], batch_size: int = 64) -> list[StepScores]:
    """Per-step probabilities from precomputed step embeddings, in batches, calibrated by the
    head's saved temperature."""
    head.eval()
    out: list[StepScores] = []
    for start in range(0, len(features), batch_size):
        rows = list(range(start, min(start + batch_size, len(features))))
        batch = collate(features, None, rows)
        logits = head(batch["features"], batch["step_mask"])  # (B, T)
        probs = torch.sigmoid(logits / head.calibration.temperature)
        out.extend(probs[r, :len(features[i])].tolist() for r, i in enumerate(rows))
    return out


def aggregate_all(step_probs: list[StepScores], aggregations=tuple(AGGREGATIONS)) -> dict[str, list[float]]:
    """Every aggregation of every trajectory: ``{name: [score per trajectory]}``."""
    width = max(len(p) for p in step_probs)
    probs = torch.zeros(len(step_probs), width, dtype=torch.float64)
    mask = torch.zeros(len(step_probs), width, dtype=torch.bool)
    for row, p in enumerate(step_probs):
        probs[row, :len(p)] = torch.tensor(p, dtype=torch.float64)
        mask[row, :len(p)] = True
    return {name: aggregate(probs, mask, name).tolist() for name in aggregations}

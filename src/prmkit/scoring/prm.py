"""prmkit's own heads behind the ``Scorer`` protocol.

``HeadScorer`` joins a trained head (step features → logits, calibrated by its saved temperature)
to any way of computing its features; ``PRM`` is the one whose features come from a backbone
reading the steps (text → step embeddings, through the cache). Content-free baselines are
``HeadScorer``s over length or noise features.
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from prmkit.batch import collate
from prmkit.embed import Backbone, EmbedConfig, EmbeddingCache, EmbedStats, embed_trajectories
from prmkit.embed.cache import to_fp16
from prmkit.embed.prefix import Past
from prmkit.model import PRMHead, read_config
from prmkit.errors import PrmkitError
from prmkit.hub import model_folder, push_to_hub
from prmkit.records import Location, Trajectory
from prmkit.train import read_training
from prmkit.scoring.base import Partial, StepScores, rescore, score

@dataclass(frozen=True)
class _Kept:
    """What ``PRM.extend`` continues from: the prefix's key/value states and step vectors."""

    past: Past
    features: np.ndarray  # (T, D) float16


Featurize = Callable[[list[Trajectory]], list[np.ndarray]]  # -> [(num_steps, D)]


def precomputed(trajectories: list[Trajectory], features: list[np.ndarray]) -> Featurize:
    """A featurizer that serves features computed earlier for these very trajectory objects
    (looked up by identity: equal text elsewhere is not assumed to share them)."""
    table = {id(t): f for t, f in zip(trajectories, features)}

    def featurize(batch: list[Trajectory]) -> list[np.ndarray]:
        try:
            return [table[id(t)] for t in batch]
        except KeyError:
            raise ValueError("a trajectory without precomputed features") from None

    return featurize


class HeadScorer:
    """A trained head over the features ``featurize`` computes for a list of trajectories."""

    def __init__(self, head: PRMHead, featurize: Featurize, batch_size: int = 64):
        self.head, self.featurize, self.batch_size = head.eval(), featurize, batch_size

    @property
    def threshold(self) -> float | None:
        return self.head.calibration.threshold

    def score_batch(self, trajectories: list[Trajectory]) -> list[StepScores]:
        return score_features(self.head, self.featurize(trajectories), self.batch_size)

    def score(self, question: str, steps: list[str]) -> StepScores:
        """Per-step probabilities for one solution."""
        return score(self, question, steps)


class PRM(HeadScorer):
    """A trained head with its backbone. ``probs`` are P(step correct | question, steps <= t)."""

    def __init__(self, head: PRMHead, backbone: Backbone, cache: EmbeddingCache | None = None,
                 batch_size: int = 64):
        super().__init__(head, self.embed, batch_size)
        self.backbone, self.cache = backbone, cache
        self.last_embed_report: dict | None = None
        self.incremental_stats = EmbedStats()  # the work ``begin`` and ``extend`` did

    def embed(self, trajectories: list[Trajectory], progress: bool = False,
              locations: list[Location] | None = None) -> list[np.ndarray]:
        """Step features through the backbone and the cache; the work done is kept in
        ``last_embed_report``."""
        features, self.last_embed_report = embed_trajectories(
            trajectories, self.backbone, self.cache, progress=progress, locations=locations)
        return features

    # --- step by step (search): each prefix's key/value states kept, a step costs its tokens --

    def begin(self, question: str) -> Partial:
        """The empty solution; on a causal backbone read in context, the question runs once here
        and every step ``extend`` adds continues from it."""
        if not self.backbone.incremental:
            return Partial(question, (), ())
        past = self.backbone.begin(question, self.incremental_stats)
        return Partial(question, (), (), _Kept(past, np.zeros((0, self.backbone.hidden_size),
                                                              np.float16)))

    def extend(self, partials: Sequence[Partial], steps: Sequence[str]) -> list[Partial]:
        """Each partial solution with one more step. The backbone runs only the new step's
        tokens after the kept states; the head (small) re-reads the step vectors so far, so
        with its causal attention every probability equals scoring the whole solution."""
        if not partials:
            return []
        if any(p.state is None for p in partials):
            return rescore(self, partials, steps)
        vectors, pasts = self.backbone.extend([p.state.past for p in partials], list(steps),
                                              self.incremental_stats)
        # float16, as the pipeline stores every step vector: the head reads what it trained on
        features = [np.concatenate([p.state.features, to_fp16(v[None])])
                    for p, v in zip(partials, vectors)]
        probs = score_features(self.head, features, self.batch_size)
        return [Partial(p.question, (*p.steps, step), tuple(pr), _Kept(past, f))
                for p, step, pr, past, f in zip(partials, steps, probs, pasts, features)]

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                        batch_size: int = 64, revision: str | None = None,
                        device: str | torch.device = "cpu") -> "PRM":
        """Load a head saved by ``prmkit train`` (a folder, or a hub id such as
        ``org/my-prm``) and the backbone it names, or the fine-tuned backbone saved beside it
        (``prmkit train --finetune``: its adapter over the named base, or the whole model).

        The backbone is rebuilt from the saved embed settings and its fingerprint (weights hash,
        pooling, layer, dtype, adapter hash, ...) must equal the one the head was trained on.
        """
        from prmkit.train.finetuned import BACKBONE_DIR, read_finetune, scoring_backbone

        directory = model_folder(directory, revision)
        config = read_config(directory)
        read_training(directory)  # every section of an untrusted folder is checked
        finetuned = read_finetune(directory)
        embed = EmbedConfig(**config.embed)
        if config.backbone_path and (finetuned is None or finetuned.mode == "lora"):
            # trained on a local folder: found wherever we run from
            if not os.path.isdir(config.backbone_path):
                raise PrmkitError(f"{directory} was trained on the backbone folder "
                                  f"{config.backbone_path}, which no longer exists")
            embed = replace(embed, backbone=config.backbone_path)
        if finetuned is not None:
            folder = Path(directory) / BACKBONE_DIR
            if not folder.is_dir():
                raise PrmkitError(f"{directory} holds a fine-tuned head without its backbone "
                                  f"folder {BACKBONE_DIR}/")
            backbone = scoring_backbone(embed, finetuned, folder, device)
        else:
            backbone = Backbone(embed, device=device)
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

    def score_batch(self, trajectories: list[Trajectory], progress: bool = False,
                    locations: list[Location] | None = None) -> list[StepScores]:
        """``progress`` shows the embedding bar; ``locations`` (file, line per trajectory) lets
        a refused record be named by its line."""
        return score_features(self.head, self.embed(trajectories, progress, locations),
                              self.batch_size)


@torch.no_grad()
def step_spread(head, features: list[np.ndarray], batch_size: int = 64) -> list[StepScores]:
    """An ensemble's per-step spread (the members' standard deviation of probability)."""
    out: list[StepScores] = []
    for start in range(0, len(features), batch_size):
        rows = list(range(start, min(start + batch_size, len(features))))
        batch = collate(features, None, rows)
        spread = head.spread(batch["features"], batch["step_mask"])  # (B, T)
        out.extend(spread[r, :len(features[i])].tolist() for r, i in enumerate(rows))
    return out


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

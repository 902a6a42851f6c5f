"""Checkpoints: what a run is (its fingerprint), and saving and loading its state safely."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from prmkit._io import atomic_save

CHECKPOINT_NAME = "checkpoint.pt"


def run_fingerprint(features, labels, questions: list[str], model_config, config) -> str:
    """What a checkpoint belongs to: the features, labels, questions (they decide the split)
    and both configs."""
    h = hashlib.sha256()
    h.update(json.dumps([asdict(model_config), asdict(config), labels, questions],
                        sort_keys=True).encode())
    for f in features:
        h.update(np.ascontiguousarray(f).tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    # weights_only: a checkpoint is data, never code to unpickle
    return torch.load(path, weights_only=True)

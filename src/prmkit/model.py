"""The PRM head: step embeddings in, one logit per step out.

Design (the reference spec): standardize features → input projection → + learned step-position
embedding → TransformerEncoder over the steps with a padding mask → MLP → one logit per step.

Attention over steps is **causal by default**: the spec defines V(step_t | question, steps <= t),
so a step's score must not move when later steps are added or edited (and beam search can score a
partial solution). ``causal=False`` gives the spec's bidirectional attention, to compare against.

A trajectory longer than ``max_steps`` is refused with a clear error rather than silently cut:
the position embedding has no row for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prmkit._io import atomic_save, write_json
from prmkit.errors import PrmkitError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TARGETS = ("step", "outcome")


@dataclass
class PRMConfig:
    """The head's shape and what it was trained for. Defaults are the reference spec's."""

    input_dim: int
    hidden_size: int = 512
    num_layers: int = 4
    num_heads: int = 8
    dropout: float = 0.1
    max_steps: int = 512
    causal: bool = True
    target: str = "step"  # "step": a PRM; "outcome": an ORM (one label on the last step)
    embed: dict = field(default_factory=dict)  # the EmbedConfig used, as a dict
    backbone_fingerprint: dict = field(default_factory=dict)  # Backbone.fingerprint

    def __post_init__(self):
        if self.input_dim < 1 or self.hidden_size < 1 or self.num_layers < 0 \
                or self.num_heads < 1:
            raise ValueError("input_dim, hidden_size and num_heads must be positive, "
                             "num_layers >= 0")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_heads {self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.max_steps < 1:
            raise ValueError("max_steps must be positive")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")


class PRMHead(nn.Module):
    """Maps step embeddings to per-step logits.

    Shape:
        features: (B, T, D) float; step_mask: (B, T) bool, True on real steps, each row with at
        least one real step (an all-padding row would make attention produce NaN).
        returns logits: (B, T); values at padded positions are meaningless.
    """

    def __init__(self, config: PRMConfig):
        super().__init__()
        self.config = config
        d, h = config.input_dim, config.hidden_size
        # Standardization statistics live with the weights, so a saved head is self-contained.
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        self.input_proj = nn.Linear(d, h)
        self.step_position = nn.Embedding(config.max_steps, h)
        layer = nn.TransformerEncoderLayer(h, config.num_heads, dim_feedforward=4 * h,
                                           dropout=config.dropout, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Dropout(config.dropout),
                                  nn.Linear(h, 1))

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-6))

    def forward(self, features: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = features.shape
        if steps > self.config.max_steps:
            raise PrmkitError(f"a trajectory has {steps} steps; this head takes at most "
                              f"max_steps={self.config.max_steps} (split it or train with a "
                              "larger --max-steps)")
        x = (features.float() - self.feature_mean) / self.feature_std  # (B, T, D)
        x = self.input_proj(x) + self.step_position.weight[:steps]  # (B, T, H)
        attn_mask = None
        if self.config.causal:
            attn_mask = torch.ones(steps, steps, dtype=torch.bool,
                                   device=features.device).triu(1)  # True = may not attend
        x = self.encoder(x, mask=attn_mask, src_key_padding_mask=~step_mask)  # (B, T, H)
        return self.head(x).squeeze(-1)  # (B, T)

    # --- persistence -------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``model.safetensors`` then ``config.json`` (the config marks a complete save)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        atomic_save(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp))
        write_json(directory / CONFIG_NAME, {"prmkit_head": asdict(self.config)})

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike,
                        backbone_fingerprint: dict | None = None) -> "PRMHead":
        """Load a saved head. With ``backbone_fingerprint``, refuse a head trained on other
        features (another backbone, layer, pooling, dtype...): its scores would be meaningless."""
        directory = Path(directory)
        config = read_config(directory)
        if backbone_fingerprint is not None:
            check_same_backbone(config.backbone_fingerprint, backbone_fingerprint, directory)
        model = cls(config)
        model.load_state_dict(load_file(directory / WEIGHTS_NAME))
        model.eval()
        return model


def read_config(directory: str | os.PathLike) -> PRMConfig:
    """The config of a head saved with ``save_pretrained``."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.exists() or not (directory / WEIGHTS_NAME).exists():
        raise PrmkitError(f"{directory} is not a saved prmkit model (needs {CONFIG_NAME} and "
                          f"{WEIGHTS_NAME})")
    raw = json.loads(config_path.read_text())
    if not isinstance(raw, dict) or "prmkit_head" not in raw:
        raise PrmkitError(f"{config_path} is not a prmkit head config")
    return PRMConfig(**raw["prmkit_head"])


def check_same_backbone(saved: dict, given: dict, where: str | os.PathLike = "the model") -> None:
    differences = [f"{key}: trained with {saved.get(key)!r}, given {given.get(key)!r}"
                   for key in sorted(set(saved) | set(given)) if saved.get(key) != given.get(key)]
    if differences:
        raise PrmkitError(f"{where} was trained on features from another backbone setting; "
                          "refusing to score with it (" + "; ".join(differences) + ")")

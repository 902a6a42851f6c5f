"""What a fine-tuned PRM saves beside its head, and how scoring reads it back: the ``finetune``
section of its config (``FinetuneConfig``), the folder of its backbone (the LoRA adapter, or the
whole model), and the backbone it scores with. Fine-tuning itself is ``finetune.py``; scoring
(``prmkit.scoring``) needs only this module."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from prmkit.embed import Backbone, EmbedConfig

MODES = ("lora", "full")
BACKBONE_DIR = "backbone"
# Learning rates of the backbone's weights when none is given: the usual ones for LoRA and for
# full fine-tuning of a small LM.
DEFAULT_BACKBONE_LR = {"lora": 1e-4, "full": 1e-5}


@dataclass
class FinetuneConfig:
    """How the backbone is fine-tuned; saved as the model's ``finetune`` section."""

    mode: str = "lora"
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    # None: every linear layer of the adapted decoder blocks (peft's "all-linear"), which suits
    # any architecture; or module names such as ("q_proj", "v_proj")
    lora_targets: tuple[str, ...] | None = None
    backbone_lr: float | None = None  # None: DEFAULT_BACKBONE_LR[mode]
    gradient_checkpointing: bool = False
    # Each batch runs as micro-batches whose gradients add up to the batch's: at least
    # ``grad_accum`` of them, each within ``micro_batch_tokens`` padded tokens (memory grows with
    # tokens x layers run; rows are grouped by length, so little is padding).
    grad_accum: int = 1
    micro_batch_tokens: int = 4096
    max_minutes: float | None = None  # wall-clock budget of the training loop
    eval_every: int = 0  # optimizer steps between validations; 0: once an epoch

    def __post_init__(self):
        if isinstance(self.lora_targets, list):  # a config read back from JSON
            self.lora_targets = tuple(self.lora_targets)
        if self.mode not in MODES:
            raise ValueError(f"finetune mode must be one of {MODES}, got {self.mode!r}")
        if self.lora_rank < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError("lora_rank must be >= 1, lora_alpha > 0, lora_dropout in [0, 1)")
        if self.grad_accum < 1 or self.eval_every < 0 or self.micro_batch_tokens < 1:
            raise ValueError("grad_accum and micro_batch_tokens must be >= 1, eval_every >= 0")
        if self.backbone_lr is not None and self.backbone_lr <= 0:
            raise ValueError("backbone_lr must be positive")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("max_minutes must be positive")

    @property
    def lr(self) -> float:
        return self.backbone_lr if self.backbone_lr is not None else DEFAULT_BACKBONE_LR[self.mode]


def scoring_backbone(embed: EmbedConfig, ft: FinetuneConfig, folder: Path,
                     device: str | torch.device = "cpu") -> Backbone:
    """The backbone a fine-tuned model scores with: the base with the adapter in ``folder``
    (LoRA), or the model saved in ``folder`` (full, float32 as trained)."""
    if ft.mode == "lora":
        return Backbone(embed, device=device, adapter=folder)
    return Backbone(replace(embed, backbone=str(folder), dtype="float32"), device=device)


def read_finetune(directory: str | os.PathLike) -> FinetuneConfig | None:
    """The ``finetune`` section of a saved model, checked field by field (None for a head
    trained on frozen features)."""
    from prmkit.model import read_raw_config
    from prmkit.schema import from_dict

    raw, where = read_raw_config(directory)
    section = raw.get("finetune") if isinstance(raw, dict) else None
    return None if section is None else from_dict(FinetuneConfig, section, f"{where}: finetune")

"""Fine-tuning the backbone with the step head: ``prmkit train --finetune lora|full``.

The frozen path embeds steps once (``embed/``) and trains a head on the cached vectors
(``train/``). Here the backbone learns too: each solution runs through the backbone once, its
step vectors are pooled at the step spans of the step-end contract (``embed/tokens.py``) with the
backbone's own pooling and layer, and the head's masked BCE flows back into the backbone.

    StepTokens --backbone.forward--> read states (B, L, H) --pool at spans--> (B, T, H)
               --PRMHead--> logits (B, T) --masked BCE over labelled steps

* ``lora``: low-rank adapters (``peft``) on the decoder layers below the layer read (layers
  above it never run, so adapting them would change nothing); the base weights stay frozen.
* ``full``: every weight of the backbone, trained and saved in float32.

Saved beside the head in ``out/backbone``: the adapter (``adapter_config.json`` and its
safetensors) or the whole model with its tokenizer. ``PRM.from_pretrained`` rebuilds the backbone
from it; scoring then goes through the same embedding pipeline as a frozen model (single pass,
shared prefixes, the cache), keyed by a fingerprint that holds the adapter's or the weights' hash,
so a fine-tuned model never shares a cache entry with the frozen one. Training the whole model
costs a forward and backward pass per solution per epoch: on a CPU this is slow; on a GPU it is
the lever (README, "Fine-tuning the backbone").

Under torchrun the backbone and head train under DistributedDataParallel, each rank a share of
every batch with its loss scaled to the batch's count of labelled steps (as ``loop.py`` does for
the head alone); rank 0 validates, keeps the clock and saves.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from prmkit import distributed
from prmkit.batch import pad_labels
from prmkit._io import jsonable, remove_stale_temporaries, write_json
from prmkit.data.formats import load_located
from prmkit.embed import Backbone, EmbedConfig
from prmkit.embed.rows import pad, plan_batches
from prmkit.embed.tokens import StepTokens
from prmkit.errors import DataError, PrmkitError
from prmkit.metrics import auroc
from prmkit.model import PRMConfig, PRMHead
from prmkit.records import Location, Trajectory, check_label_kind, check_steps
from prmkit.train import SUMMARY_NAME, TrainConfig, model_folder_for, training_labels
from prmkit.train.finetuned import BACKBONE_DIR, FinetuneConfig, read_finetune, scoring_backbone
from prmkit.train.loop import _split

if TYPE_CHECKING:
    from prmkit.scoring import PRM

# Trajectories whose frozen step vectors give the head's standardization statistics.
STATS_TRAJECTORIES = 256


def check_finetunable(backbone: Backbone) -> None:
    """Fine-tuning runs one forward pass per solution and reads hidden states: a causal LM read
    in context, with ``features="hidden"``."""
    what = backbone.config.backbone
    if not backbone.single_pass or backbone.config.context != "prefix":
        raise PrmkitError(f"fine-tuning needs a causal LM reading each step in context in one "
                          f"pass per solution; {what} with context={backbone.config.context!r} "
                          "is not one (use a causal backbone such as smollm2, --context prefix)")
    if backbone.config.features != "hidden":
        raise PrmkitError("fine-tuning trains on hidden states only: use --features hidden "
                          f"(got {backbone.config.features!r})")


def pooling_weights(tokens: list[StepTokens], offset: int, pooling: str,
                    width: int) -> torch.Tensor:
    """The pooling of ``Backbone._pool`` as a matrix, so it is differentiable: step ``t`` of row
    ``b`` is ``weights[b, t] @ states[b]``. ``offset`` is the number of special tokens before
    the question.

    Shape: -> (B, T_max, width) float32; rows past a trajectory's steps are zero.
    """
    steps = max(t.num_steps for t in tokens)
    weights = torch.zeros(len(tokens), steps, width)
    for b, t in enumerate(tokens):
        for k, (start, end) in enumerate(zip(t.starts, t.ends)):
            start, end = start + offset, end + offset
            if pooling == "last":
                weights[b, k, end - 1] = 1.0
            elif pooling == "prefix":
                weights[b, k, :end] = 1.0 / end
            else:
                weights[b, k, start:end] = 1.0 / (end - start)
    return weights


class StepModel(nn.Module):
    """A backbone and a step head as one module: solutions in, step logits out.

    Shape: ``forward(tokens)`` with B trajectories of at most T steps -> logits (B, T);
    ``step_features(tokens)`` -> (B, T, H) and the step mask (B, T).
    """

    def __init__(self, backbone: Backbone, head: PRMHead):
        super().__init__()
        self.backbone = backbone  # a plain object: its model is registered just below
        self.lm = backbone.model
        self.head = head

    def step_features(self, tokens: list[StepTokens]) -> tuple[torch.Tensor, torch.Tensor]:
        backbone = self.backbone
        pre = backbone.prefix_ids
        ids, mask = pad([pre + list(t.ids) for t in tokens], backbone.pad_id)  # (B, L)
        read, _ = backbone.forward(ids, mask)  # (B, L, H) float32
        weights = pooling_weights(tokens, len(pre), backbone.config.pooling, ids.shape[1])
        features = torch.bmm(weights.to(read.device), read)  # (B, T, H)
        lengths = torch.tensor([t.num_steps for t in tokens])
        step_mask = torch.arange(features.shape[1])[None, :] < lengths[:, None]  # (B, T)
        return features, step_mask.to(read.device)

    def forward(self, tokens: list[StepTokens]) -> torch.Tensor:
        features, step_mask = self.step_features(tokens)
        return self.head(features, step_mask)  # (B, T)


def add_lora(model, config: FinetuneConfig, layers: int):
    """LoRA adapters on the decoder blocks ``0..layers-1`` of ``model``, changed in place (the
    model keeps its type and forward); returns the ``PeftModel`` that saves them. The base
    weights are frozen. Targets: the linear layers of those blocks whose names end in one of
    ``config.lora_targets`` (default: every linear layer in them), named in full."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise PrmkitError("--finetune lora needs peft: pip install 'prmkit[finetune]'") from None
    if layers < 1:
        raise PrmkitError("the layer read is the input embedding: there is no decoder layer "
                          "below it to adapt (choose a deeper --layer)")
    from prmkit.embed.backbone import _blocks, quiet_peft

    blocks = _blocks(model, model.config.num_hidden_layers)
    prefix = next(name for name, module in model.named_modules() if module is blocks)
    targets = [f"{prefix}.{i}.{name}" for i in range(layers)
               for name, module in blocks[i].named_modules()
               if isinstance(module, nn.Linear) and (
                   not config.lora_targets or name.split(".")[-1] in config.lora_targets)]
    if not targets:
        raise PrmkitError(f"no linear layer named {', '.join(config.lora_targets or ())} in "
                          f"the decoder blocks of {type(model).__name__}")
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=targets)
    with quiet_peft():
        return get_peft_model(model, lora)


def micro_batches(rows: list[int], lengths: list[int], ft: FinetuneConfig) -> list[list[int]]:
    """``rows`` sorted by length and cut into runs whose padded size (rows x longest) stays
    within ``ft.micro_batch_tokens`` (a longer row runs alone), at least ``ft.grad_accum`` runs
    where there are rows enough. A pure function of its input."""
    order = sorted(range(len(rows)), key=lambda i: (lengths[i], i))
    parts: list[list[int]] = []
    for i in order:
        if parts and (len(parts[-1]) + 1) * lengths[i] <= ft.micro_batch_tokens:
            parts[-1].append(i)
        else:
            parts.append([i])
    while len(parts) < min(ft.grad_accum, len(rows)):  # split the largest run in two
        k = max(range(len(parts)), key=lambda j: (len(parts[j]), -j))
        half = len(parts[k]) // 2
        parts[k:k + 1] = [parts[k][:half], parts[k][half:]]
    return [[rows[i] for i in part] for part in parts]


def _trainable(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that train (the best weights so far), on the CPU."""
    return {name: p.detach().to("cpu", copy=True) for name, p in module.named_parameters()
            if p.requires_grad}


def _batches(model: StepModel, tokens, rows: list[int]) -> list[list[int]]:
    """Forward batches without gradients: rows grouped by length within the backbone's token
    budget (``rows.plan_batches``), so a long solution does not pad a batch of short ones."""
    plan = plan_batches([len(tokens[i].ids) for i in rows], model.backbone.config.batch_tokens)
    return [[rows[j] for j in batch] for batch in plan]


@torch.no_grad()
def _evaluate(model: StepModel, tokens, labels, rows: list[int]) -> dict:
    """Validation loss (masked BCE over labelled steps) and step AUROC."""
    model.eval()
    loss_sum, count, probs, gold = 0.0, 0, [], []
    for batch in _batches(model, tokens, rows):
        logits = model([tokens[i] for i in batch])
        y, known = (t.to(logits.device) for t in pad_labels(labels, batch, logits.shape[1]))
        per_step = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        loss_sum += float(per_step[known].sum())
        count += int(known.sum())
        probs.append(torch.sigmoid(logits[known]).float().cpu().numpy())
        gold.append(y[known].cpu().numpy())
    p, g = np.concatenate(probs), np.concatenate(gold)
    return {"loss": loss_sum / max(count, 1), "step_auroc": auroc(p, g)}


@torch.no_grad()
def _feature_stats(model: StepModel, tokens, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the frozen backbone's step vectors over the first training rows."""
    total, total_sq, count = 0.0, 0.0, 0
    for batch in _batches(model, tokens, rows):
        features, step_mask = model.step_features([tokens[i] for i in batch])
        real = features[step_mask].double().cpu()  # (steps, H)
        total, total_sq, count = total + real.sum(0), total_sq + (real * real).sum(0), \
            count + len(real)
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


def finetune(trajectories: list[Trajectory], backbone: Backbone, head_config: PRMConfig,
             config: TrainConfig, ft: FinetuneConfig, out_dir: str | os.PathLike,
             progress: bool = True, locations: list[Location] | None = None
             ) -> tuple[dict, "PRM"]:
    """Train ``backbone`` and a new head together on the step labels; save both to ``out_dir``
    (the head as ``PRMHead.save_pretrained`` writes it, the backbone in ``out_dir/backbone``)
    and return a summary and the trained PRM (in memory; ``PRM.from_pretrained(out_dir)``
    loads the same). The best weights by validation loss are kept; training stops after
    ``config.epochs``, ``config.patience`` validations without improvement, or
    ``ft.max_minutes``. ``head_config`` gives the head's shape; its input size and backbone
    settings are filled in here.
    """
    check_finetunable(backbone)
    check_label_kind(trajectories)
    if config.target != "step" or config.ensemble > 1 or config.outcome_weight \
            or config.next_step_weight or config.hard_negative_rounds:
        raise PrmkitError("--finetune trains a step head with plain BCE: ORM targets, "
                          "ensembles, multi-task heads and hard-negative rounds are for the "
                          "frozen path")
    out_dir = Path(out_dir)
    torch.set_num_threads(config.num_threads)
    device = backbone.device
    tokens = _tokenize(backbone, trajectories, locations)
    labels = [training_labels(t, "step") for t in trajectories]
    train_idx, val_idx = _split(trajectories, labels, config)

    torch.manual_seed(config.seed)
    base = backbone.model
    peft_model = None
    if ft.mode == "lora":
        peft_model = add_lora(base, ft, backbone.layers_run)
    else:
        base.float()  # full fine-tuning keeps float32 master weights
        for p in base.parameters():
            p.requires_grad_(True)
    if ft.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    head_config = replace(head_config, input_dim=backbone.hidden_size)
    head = PRMHead(head_config)
    model = StepModel(backbone, head).to(device)
    model.eval()  # the statistics are the frozen backbone's (LoRA starts as the identity)
    stats_rows = train_idx[:STATS_TRAJECTORIES]
    head.set_feature_stats(*[x.to(device) for x in
                             _feature_stats(model, tokens, stats_rows)])

    backbone_params = [p for p in base.parameters() if p.requires_grad]
    # Under torchrun: DistributedDataParallel, each rank a share of every batch (below).
    world, rank = distributed.world_size(), distributed.rank()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=ft.mode == "full")  # layers above the one read never run
    optimizer = torch.optim.AdamW(
        [{"params": list(head.parameters()), "lr": config.lr},
         {"params": backbone_params, "lr": ft.lr}], weight_decay=config.weight_decay)
    autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    batches_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    best = {"val": math.inf, "step": 0, "epoch": 0, "weights": _trainable(model)}
    history, bad, step, stop = [], 0, 0, None
    started = time.perf_counter()
    bar = tqdm(total=config.epochs * batches_per_epoch, unit="batch", desc=f"finetune {ft.mode}",
               disable=not progress, leave=False)

    def validate(epoch: int) -> bool:
        """Validate, keep the best weights; True when patience has run out."""
        nonlocal bad
        record = {"epoch": epoch, "step": step, "minutes": (time.perf_counter() - started) / 60}
        if val_idx:  # rank 0 validates; every rank acts on its answer
            val = distributed.broadcast_object(
                _evaluate(model, tokens, labels, val_idx) if distributed.is_main() else None)
            record.update(val_loss=val["loss"], val_step_auroc=val["step_auroc"])
            better = val["loss"] < best["val"]
        else:
            better = True
        history.append(record)
        if better:
            best.update(val=record.get("val_loss", -step), step=step, epoch=epoch,
                        weights=_trainable(model))
            bad = 0
        else:
            bad += 1
        model.train()
        return bad >= config.patience

    for epoch in range(config.epochs):
        order = torch.randperm(len(train_idx),
                               generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        model.train()
        for b in range(batches_per_epoch):
            rows = [train_idx[i] for i in order[b * config.batch_size:(b + 1) * config.batch_size]]
            # the batch's labelled steps, counted once: each micro-batch's sum is divided by it,
            # so accumulated gradients equal those of the whole batch at once
            total = sum(sum(label is not None for label in labels[i]) for i in rows)
            optimizer.zero_grad(set_to_none=True)
            loss_value = 0.0
            # K ranks: rank r runs rows r::K, its loss scaled by K so that DDP's mean of the
            # ranks' gradients is the whole batch's; a rank left without rows runs one row at
            # weight 0 (it must still join the all-reduce) rather than repeat a sample
            mine = rows[rank::world]
            parts = micro_batches(mine, [len(tokens[i].ids) for i in mine], ft) or [rows[:1]]
            scale = float(world) if mine else 0.0
            for j, part in enumerate(parts):
                last = j == len(parts) - 1
                with (net.no_sync() if world > 1 and not last else contextlib.nullcontext()):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        logits = net([tokens[i] for i in part])  # (b, T)
                    y, known = (t.to(device) for t in pad_labels(labels, part, logits.shape[1]))
                    per_step = nn.functional.binary_cross_entropy_with_logits(
                        logits.float(), y, reduction="none")
                    loss = per_step[known].sum() / max(total, 1) * scale
                    loss.backward()
                loss_value += loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch + 1)
            over = ft.max_minutes is not None and \
                time.perf_counter() - started > 60 * ft.max_minutes
            if distributed.broadcast_object(over):  # rank 0's clock decides for all
                stop = "time budget"
                break
            if ft.eval_every and step % ft.eval_every == 0 and b + 1 < batches_per_epoch \
                    and validate(epoch + 1):
                stop = "patience"
                break
        if stop is None and validate(epoch + 1):
            stop = "patience"
        elif stop == "time budget":
            validate(epoch + 1)
        if stop is not None:
            break
    bar.close()
    model.load_state_dict(best["weights"], strict=False)
    model.eval()
    summary = {"target": "step", "finetune": ft.mode, "train_trajectories": len(train_idx),
               "val_trajectories": len(val_idx), "optimizer_steps": step,
               "best_step": best["step"], "best_epoch": best["epoch"], "stopped_by": stop or "epochs",
               "minutes": (time.perf_counter() - started) / 60, "history": history,
               "trainable_backbone_parameters": sum(p.numel() for p in backbone_params)}
    if not distributed.is_main():  # rank 0 saves; the others wait for its summary
        return distributed.broadcast_object(None), None
    saved = _save(model, peft_model, trajectories, tokens, labels, train_idx, val_idx, config,
                  ft, out_dir, summary)
    distributed.broadcast_object(saved[0])
    return saved


def _tokenize(backbone: Backbone, trajectories: list[Trajectory],
              locations: list[Location] | None) -> list[StepTokens]:
    """The step-end contract's tokens of each trajectory; a solution longer than the backbone's
    window is refused by file and line (fine-tuning reads each solution in one pass)."""
    out = []
    room = backbone.max_length - len(backbone.prefix_ids)
    for i, t in enumerate(trajectories):
        where = {"path": locations[i][0], "line": locations[i][1]} if locations else {}
        try:
            tokens = backbone.tokenize(t.question, t.steps)
        except DataError as e:
            if not where:
                raise DataError(f"trajectory {i}: {e.message}", field=e.field) from None
            raise DataError(e.message, field=e.field, **where) from None
        if len(tokens.ids) > room:
            message = (f"{len(tokens.ids)} tokens, more than the backbone's window of {room}: "
                       "fine-tuning reads each solution in one pass (split it, or leave it out)")
            if not where:
                raise DataError(f"trajectory {i}: {message}")
            raise DataError(message, **where)
        out.append(tokens)
    return out


def _save(model: StepModel, peft_model, trajectories, tokens, labels, train_idx, val_idx,
          config: TrainConfig, ft: FinetuneConfig, out_dir: Path, summary: dict
          ) -> tuple[dict, "PRM"]:
    """The backbone into ``out_dir/backbone`` (written beside, then renamed), the head with the
    fingerprint of the backbone as saved, calibrated on the validation split, and the summary."""
    backbone, head = model.backbone, model.head
    folder = out_dir / BACKBONE_DIR
    tmp = out_dir / f".{BACKBONE_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if peft_model is not None:
        peft_model.save_pretrained(str(tmp))
    else:
        backbone.model.save_pretrained(str(tmp))
        backbone.tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    saved = scoring_backbone(backbone.config, ft, folder, backbone.device)
    saved._model, saved._cache_arg = backbone.model, backbone._cache_arg  # the weights saved
    # the backbone passed in now holds the trained weights: it must never again key a cache
    # entry, or a head's check, as the frozen model
    backbone._fingerprint = saved.fingerprint
    settings = backbone.head_settings()
    # the base's name, not this folder's path: the loader finds the folder beside the head
    head.config = replace(head.config,
                          embed=asdict(replace(saved.config, backbone=backbone.config.backbone)),
                          backbone_fingerprint=saved.fingerprint,
                          backbone_path=settings["backbone_path"])
    head.cpu()
    finetune_section = asdict(ft)
    if config.calibrate and val_idx:
        # calibrated on what scoring reads: the saved backbone's vectors, stored as float16 as
        # the pipeline stores them (``Backbone.embed`` directly: under torchrun only rank 0 is
        # here, and the pipeline would wait for the other ranks)
        from prmkit.embed.cache import to_fp16
        from prmkit.train.loop import calibrate

        vectors, _ = saved.embed([tokens[i] for i in val_idx])
        features = {i: to_fp16(v) for i, v in zip(val_idx, vectors)}
        head.calibration, summary["calibration"] = calibrate(
            head, trajectories, features, labels, val_idx, config)
    head.save_pretrained(out_dir, training=asdict(config), finetune=finetune_section)
    write_json(out_dir / SUMMARY_NAME, summary)
    from prmkit.scoring import PRM

    return jsonable(summary), PRM(head, saved)


def finetune_prm(data, out_dir: str | os.PathLike, embed: EmbedConfig = EmbedConfig(),
                 head: dict | None = None, config: TrainConfig = TrainConfig(),
                 ft: FinetuneConfig = FinetuneConfig(), progress: bool = True,
                 overwrite: bool = False, format: str = "jsonl",
                 device: str | torch.device = "cpu") -> dict:
    """``prmkit train --finetune``: read the data, fine-tune, save to ``out_dir``. ``embed``
    names the backbone and how it is read (its features default to ``hidden`` here)."""
    with model_folder_for(out_dir, data, overwrite) as out_dir:
        if distributed.is_main():
            remove_stale_temporaries(out_dir)
        trajectories, locations = load_located(data, format)
        try:
            head_config = PRMConfig(input_dim=1, target="step", **(head or {}))
        except ValueError as e:
            raise PrmkitError(str(e)) from None
        check_steps(trajectories, locations, head_config.max_steps,
                    "raise max_steps (--max-steps) or split it")
        backbone = Backbone(replace(embed, features=embed.features or "hidden"), device=device)
        summary, _ = finetune(trajectories, backbone, head_config, config, ft, out_dir,
                              progress, locations)
    return {**summary, "out": str(out_dir)}


__all__ = ["FinetuneConfig", "StepModel", "finetune", "finetune_prm", "read_finetune",
           "scoring_backbone", "pooling_weights"]

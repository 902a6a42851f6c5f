"""Training the PRM head on cached step embeddings.

Reads top to bottom: split by question → standardize → build the head → resume if a checkpoint
exists → epochs of masked BCE with AdamW → validation, early stopping, best weights kept → save.

Reproducible on CPU: the thread count is pinned, each epoch's order comes from a generator seeded
by (seed, epoch), and checkpoints hold the model, optimizer, dropout RNG state and position. A
run killed at any point and started again with the same command resumes from its last checkpoint
and ends with weights bit-identical to an uninterrupted run.

An ORM is the same head with ``target="outcome"``: one label, the final answer's correctness, on
the last step of each trajectory.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from prmkit._io import (OVERWRITE_HINT, file_lock, jsonable,
                        remove_stale_temporaries, write_json)
from prmkit.errors import PrmkitError
from prmkit.losses import masked_bce, next_step_loss, outcome_loss, smooth_labels, step_loss
from prmkit.metrics import auroc
from prmkit.batch import collate
from prmkit.model import CONFIG_NAME, TARGETS, EnsembleHead, PRMConfig, PRMHead
from prmkit.calibrate import Calibration, fit_calibration
from prmkit.records import Label, Trajectory, check_label_kind, first_error, normalize_question
from prmkit.train.checkpoint import (CHECKPOINT_NAME, load_checkpoint, run_fingerprint,
                                     save_checkpoint)
from prmkit.train.tricks import (curriculum_indices, hard_negative_weights, step_weights,
                                 truncate_prefixes)

SUMMARY_NAME = "summary.json"


@dataclass
class TrainConfig:
    target: str = "step"  # "step" (PRM) or "outcome" (ORM)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    patience: int = 5  # epochs without a better validation loss before stopping
    seed: int = 0
    num_threads: int = 2  # pinned: CPU results depend on the thread count
    checkpoint_every: int = 0  # batches between checkpoints; 0 = at the end of each epoch
    # fit a temperature and a first-error threshold on the validation split (calibrate.py)
    calibrate: bool = True
    # --- tricks of the reference spec, all off by default (tricks.py, losses.py; README,
    # "Training tricks", has what each did when measured)
    label_smoothing: float = 0.0  # eps: labels become y (1 - 2 eps) + eps
    focal_gamma: float = 0.0  # |y - p|^gamma * BCE; 0 is plain BCE
    balance: bool = False  # right and wrong steps weigh the same in total
    length_balance: bool = False  # the same within each step-length bin
    prefix_augment: bool = False  # train on random prefixes (changes little under causal heads)
    curriculum: bool = False  # short solutions first, by the data's length quantiles
    outcome_weight: float = 0.0  # alpha: an outcome head read at the last step
    next_step_weight: float = 0.0  # beta: predict the next step's projected features
    hard_negative_rounds: int = 0  # extra rounds with confident mistakes up-weighted
    hard_negative_factor: float = 2.0
    ensemble: int = 1  # K heads with seeds seed..seed+K-1 on one split, saved as one model
    split_seed: int | None = None  # the validation split's seed (None: seed)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.num_threads < 1:
            raise ValueError("epochs, batch_size and num_threads must be positive")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.patience < 1 or self.checkpoint_every < 0:
            raise ValueError("lr must be positive, patience >= 1, checkpoint_every >= 0")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if min(self.focal_gamma, self.outcome_weight, self.next_step_weight,
               self.hard_negative_rounds) < 0 or self.hard_negative_factor < 1:
            raise ValueError("focal_gamma, outcome_weight, next_step_weight and "
                             "hard_negative_rounds must be >= 0, hard_negative_factor >= 1")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {self.ensemble}")


# --- data -------------------------------------------------------------------------------------

def split_by_question(trajectories: list[Trajectory], val_fraction: float,
                      seed: int) -> tuple[list[int], list[int]]:
    """Indices of (train, validation), with every question on one side only."""
    questions = sorted({normalize_question(t.question) for t in trajectories})
    random.Random(seed).shuffle(questions)
    # at least one validation question when asked for, and always one left to train on
    n_val = min(max(1, round(val_fraction * len(questions))), len(questions) - 1) \
        if val_fraction > 0 else 0
    val_questions = set(questions[:n_val])
    train = [i for i, t in enumerate(trajectories)
             if normalize_question(t.question) not in val_questions]
    val = [i for i, t in enumerate(trajectories) if normalize_question(t.question) in val_questions]
    return train, val


def training_labels(trajectory: Trajectory, target: str) -> list[Label]:
    """The labels the head learns: the step labels (PRM), or the outcome on the last step (ORM)."""
    if target == "step":
        return list(trajectory.labels)
    return [None] * (trajectory.num_steps - 1) + [
        None if trajectory.outcome is None else float(trajectory.outcome)]


def feature_stats(features: list[np.ndarray], indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over every step of the given trajectories (float64 sums)."""
    dim = features[indices[0]].shape[1]
    total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
    for i in indices:
        f = np.asarray(features[i], dtype=np.float64)
        total += f.sum(0)
        total_sq += (f * f).sum(0)
        count += len(f)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def batch_loss(model: PRMHead, features, labels, weights, outcomes, rows: list[int],
               config: TrainConfig, seed: int) -> torch.Tensor:
    """The training loss of one batch, with whichever tricks ``config`` turns on."""
    batch = collate(features, labels, rows)
    full_length = batch["step_mask"].sum(dim=1)  # (B,)
    if config.prefix_augment:
        batch = truncate_prefixes(batch, torch.Generator().manual_seed(seed))
    targets = batch["labels"]
    if config.label_smoothing:
        targets = smooth_labels(targets, config.label_smoothing)
    w = None
    if weights is not None:
        w = torch.zeros_like(targets)
        for r, i in enumerate(rows):
            w[r, :len(weights[i])] = torch.from_numpy(weights[i])
    if not (config.outcome_weight or config.next_step_weight):
        logits = model(batch["features"], batch["step_mask"])  # (B, T)
        return step_loss(logits, targets, batch["label_mask"], w, config.focal_gamma)
    logits, states, projected = model(batch["features"], batch["step_mask"], return_states=True)
    loss = step_loss(logits, targets, batch["label_mask"], w, config.focal_gamma)
    if config.outcome_weight:
        last = batch["step_mask"].sum(dim=1) - 1  # (B,)
        read = model.outcome_head(states[torch.arange(len(rows)), last]).squeeze(-1)  # (B,)
        known = torch.tensor([outcomes[i] is not None for i in rows]) & (last + 1 == full_length)
        truth = torch.tensor([float(outcomes[i] or 0) for i in rows])
        loss = loss + config.outcome_weight * outcome_loss(read, truth, known)
    if config.next_step_weight:
        loss = loss + config.next_step_weight * next_step_loss(
            model.next_step_head(states), projected, batch["step_mask"])
    return loss


def refine(model: PRMHead, features, labels, weights, outcomes, train_idx: list[int],
           val_idx: list[int], config: TrainConfig, round_: int) -> dict:
    """One hard-negative round: a fresh optimizer, the same epochs and early stopping, the
    mined weights; the best weights are kept (not checkpointed: a killed run redoes it)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    best = (evaluate(model, features, labels, val_idx, config.batch_size)["loss"]
            if val_idx else math.inf)
    best_weights, best_epoch, bad = copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(config.epochs):
        seed = (config.seed * 100003 + 1000 * round_ + epoch)
        order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))
        model.train()
        for b in range(math.ceil(len(train_idx) / config.batch_size)):
            rows = [train_idx[i] for i in order[b * config.batch_size:(b + 1) * config.batch_size]]
            loss = batch_loss(model, features, labels, weights, outcomes, rows, config,
                              seed * 10007 + b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
        val = evaluate(model, features, labels, val_idx, config.batch_size)["loss"] \
            if val_idx else -epoch
        if val < best:
            best, best_weights, best_epoch, bad = val, copy.deepcopy(model.state_dict()), \
                epoch + 1, 0
        else:
            bad += 1
            if bad >= config.patience:
                break
    model.load_state_dict(best_weights)
    model.eval()
    return {"round": round_, "best_epoch": best_epoch, "val_loss": best}


@torch.no_grad()
def step_logits(model: PRMHead, features, indices: list[int], batch_size: int) -> list[np.ndarray]:
    """The head's raw (uncalibrated) logits of each trajectory's steps."""
    model.eval()
    out = []
    for start in range(0, len(indices), batch_size):
        rows = indices[start:start + batch_size]
        b = collate(features, None, rows)
        logits = model(b["features"], b["step_mask"])  # (B, T)
        out.extend(logits[r, :len(features[i])].numpy() for r, i in enumerate(rows))
    return out


def calibrate(model: PRMHead, trajectories, features, labels, val_idx: list[int],
              config: TrainConfig) -> tuple[Calibration, dict]:
    """Temperature and first-error threshold fitted on the validation split (``calibrate.py``);
    splits for the threshold come from ``meta["split"]`` where records carry one."""
    logits = step_logits(model, features, val_idx, config.batch_size)
    errors = [first_error(trajectories[i]) if config.target == "step" else None
              for i in val_idx]
    splits = [str(trajectories[i].meta.get("split", "all")) for i in val_idx]
    return fit_calibration(logits, [labels[i] for i in val_idx], errors, splits)


@torch.no_grad()
def evaluate(model: PRMHead, features, labels, indices: list[int], batch_size: int) -> dict:
    """Validation loss (masked BCE over labelled steps) and step AUROC."""
    model.eval()
    loss_sum, n_labels, all_probs, all_labels = 0.0, 0, [], []
    for start in range(0, len(indices), batch_size):
        b = collate(features, labels, indices[start:start + batch_size])
        logits = model(b["features"], b["step_mask"])
        n = int(b["label_mask"].sum())
        loss_sum += float(masked_bce(logits, b["labels"], b["label_mask"])) * n
        n_labels += n
        all_probs.append(torch.sigmoid(logits)[b["label_mask"]].numpy())
        all_labels.append(b["labels"][b["label_mask"]].numpy())
    probs, gold = np.concatenate(all_probs), np.concatenate(all_labels)
    return {"loss": loss_sum / max(n_labels, 1), "step_auroc": auroc(probs, gold),
            "labelled_steps": n_labels}


# --- the loop -----------------------------------------------------------------------------------

def train(trajectories: list[Trajectory], features: list[np.ndarray], model_config: PRMConfig,
          config: TrainConfig, out_dir: str | os.PathLike, progress: bool = True,
          overwrite: bool = False, keep_checkpoint: bool = False) -> dict:
    """Train a head, save it to ``out_dir`` (save_pretrained) and return a summary dict.

    If ``out_dir`` holds a checkpoint of the same run (same features, labels and configs),
    training resumes from it; a checkpoint of another run, or a finished model, is replaced only
    with ``overwrite``. The folder is locked while training: a second run into it is refused.
    The checkpoint is removed once the model is saved, unless ``keep_checkpoint``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(out_dir, wait=False, busy="another prmkit train is writing there"):
        check_out_dir(out_dir, overwrite)
        remove_stale_temporaries(out_dir)  # left by a run killed mid-write
        if config.ensemble > 1:
            return _train_ensemble(trajectories, features, model_config, config, out_dir,
                                   progress, overwrite, keep_checkpoint)
        return _train(trajectories, features, model_config, config, out_dir, progress, overwrite,
                      keep_checkpoint)


def _train_ensemble(trajectories, features, model_config: PRMConfig, config: TrainConfig,
                    out_dir: Path, progress: bool, overwrite: bool,
                    keep_checkpoint: bool) -> dict:
    """K members, each trained (and checkpointed, so resumable) in ``out_dir/members/k`` with
    its own seed on the same split; then joined into one ``EnsembleHead``, calibrated as one
    head, saved in ``out_dir``, and the member folders removed."""
    split_seed = config.seed if config.split_seed is None else config.split_seed
    members, summaries = [], []
    for k in range(config.ensemble):
        folder = out_dir / "members" / str(k)
        member = replace(config, seed=config.seed + k, split_seed=split_seed, ensemble=1,
                         calibrate=False)
        # members keep their checkpoints until the ensemble is saved: a killed run resumes
        summaries.append(train(trajectories, features, model_config, member, folder,
                               progress=progress, overwrite=overwrite, keep_checkpoint=True))
        members.append(PRMHead.from_pretrained(folder))
    model = EnsembleHead.from_members(members)
    labels = [training_labels(t, config.target) for t in trajectories]
    train_idx, val_idx = _split(trajectories, labels, config)
    summary = {"target": config.target, "ensemble": config.ensemble, "members": summaries,
               "train_trajectories": len(train_idx), "val_trajectories": len(val_idx)}
    summary = _finish(model, trajectories, features, labels, train_idx, val_idx, config,
                      out_dir, summary)
    if not keep_checkpoint:
        shutil.rmtree(out_dir / "members")
    return summary


def _split(trajectories, labels, config: TrainConfig) -> tuple[list[int], list[int]]:
    """(train, validation) indices of the trajectories with something to learn, split by
    question with ``split_seed`` (else ``seed``)."""
    usable = [i for i, ls in enumerate(labels) if any(label is not None for label in ls)]
    if not usable:
        what = "step labels" if config.target == "step" else "outcomes"
        raise PrmkitError(f"no trajectory has {what} to train on")
    train_idx, val_idx = split_by_question(
        [trajectories[i] for i in usable], config.val_fraction,
        config.seed if config.split_seed is None else config.split_seed)
    return [usable[i] for i in train_idx], [usable[i] for i in val_idx]


def _finish(model, trajectories, features, labels, train_idx: list[int], val_idx: list[int],
            config: TrainConfig, out_dir: Path, summary: dict) -> dict:
    """Calibrate on validation (when asked), save the model, add the final losses to the
    summary and write it."""
    if config.calibrate and val_idx:
        model.calibration, summary["calibration"] = calibrate(
            model, trajectories, features, labels, val_idx, config)
    model.save_pretrained(out_dir, training=asdict(config))
    if val_idx:
        val = evaluate(model, features, labels, val_idx, config.batch_size)
        summary.update(val_loss=val["loss"], val_step_auroc=val["step_auroc"])
    summary["train_loss"] = evaluate(model, features, labels, train_idx, config.batch_size)["loss"]
    write_json(out_dir / SUMMARY_NAME, summary)
    return jsonable(summary)


def read_training(directory: str | os.PathLike) -> TrainConfig | None:
    """The training settings saved in a model folder, checked field by field (None for a
    folder saved without them)."""
    from prmkit.model import read_raw_config
    from prmkit.schema import from_dict

    raw, where = read_raw_config(directory)
    section = raw.get("training") if isinstance(raw, dict) else None
    return None if section is None else from_dict(TrainConfig, section, f"{where}: training")


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to train over a finished model (a folder with a model and no checkpoint) unless
    ``overwrite``; a checkpoint is checked against the run when training starts."""
    if (not overwrite and (out_dir / CONFIG_NAME).exists()
            and not (out_dir / CHECKPOINT_NAME).exists()):
        raise PrmkitError(f"{out_dir} holds a trained model; {OVERWRITE_HINT} to train a new "
                          "one there, or use another out_dir (--out)")


def _train(trajectories: list[Trajectory], features: list[np.ndarray], model_config: PRMConfig,
           config: TrainConfig, out_dir: Path, progress: bool, overwrite: bool,
           keep_checkpoint: bool) -> dict:
    torch.set_num_threads(config.num_threads)
    check_label_kind(trajectories)
    labels = [training_labels(t, config.target) for t in trajectories]
    model_config = replace(model_config, aux_outcome=config.outcome_weight > 0,
                           aux_next_step=config.next_step_weight > 0)
    weights = None
    if config.balance or config.length_balance or config.hard_negative_rounds:
        weights = step_weights(labels, [[len(s) for s in t.steps] for t in trajectories],
                               config.balance, config.length_balance)
    outcomes = [t.outcome for t in trajectories]
    train_idx, val_idx = _split(trajectories, labels, config)

    torch.manual_seed(config.seed)
    model = PRMHead(model_config)
    model.set_feature_stats(*feature_stats(features, train_idx))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    batches_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    fingerprint = run_fingerprint(features, labels,
                                  [normalize_question(t.question) for t in trajectories],
                                  model_config, config)
    state = {"epoch": 0, "batch": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0,
             "history": [], "done": False}
    best_weights = copy.deepcopy(model.state_dict())

    checkpoint_path = out_dir / CHECKPOINT_NAME
    resumed = None
    if checkpoint_path.exists() and not overwrite:
        ckpt = load_checkpoint(checkpoint_path)
        if ckpt["fingerprint"] != fingerprint:
            raise PrmkitError(f"{checkpoint_path} belongs to a different run (other data or "
                              f"settings); {OVERWRITE_HINT} to start again, or use another "
                              "out_dir (--out)")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        best_weights = ckpt["best_weights"]
        state = json.loads(ckpt["state"])
        torch.set_rng_state(ckpt["rng"])
        resumed = {"epoch": state["epoch"], "batch": state["batch"]}

    def checkpoint() -> None:
        save_checkpoint(checkpoint_path, {
            "fingerprint": fingerprint, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "best_weights": best_weights,
            "state": json.dumps(state), "rng": torch.get_rng_state()})

    total = config.epochs * batches_per_epoch
    done_batches = state["epoch"] * batches_per_epoch + state["batch"]
    bar = tqdm(total=total, initial=min(done_batches, total), unit="batch", desc="train",
               disable=not progress or state["done"], leave=False)
    lengths = [trajectories[i].num_steps for i in train_idx]
    while not state["done"] and state["epoch"] < config.epochs:
        epoch = state["epoch"]
        pool = ([train_idx[j] for j in curriculum_indices(lengths, epoch, config.epochs)]
                if config.curriculum else train_idx)
        order = torch.randperm(len(pool),
                               generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        batches_per_epoch = math.ceil(len(pool) / config.batch_size)
        model.train()
        for b in range(state["batch"], batches_per_epoch):
            rows = [pool[i] for i in order[b * config.batch_size:(b + 1) * config.batch_size]]
            loss = batch_loss(model, features, labels, weights, outcomes, rows, config,
                              seed=(config.seed * 100003 + epoch) * 10007 + b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            state["batch"] = b + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", epoch=epoch + 1)
            if config.checkpoint_every and state["batch"] % config.checkpoint_every == 0 \
                    and state["batch"] < batches_per_epoch:
                checkpoint()
        record = {"epoch": epoch + 1}
        if val_idx:
            val = evaluate(model, features, labels, val_idx, config.batch_size)
            record.update(val_loss=val["loss"], val_step_auroc=val["step_auroc"])
            if val["loss"] < state["best_val"]:
                state.update(best_val=val["loss"], best_epoch=epoch + 1, bad_epochs=0)
                best_weights = copy.deepcopy(model.state_dict())
            else:
                state["bad_epochs"] += 1
        else:  # nothing to validate on: the last epoch is the best we know
            state["best_epoch"] = epoch + 1
            best_weights = copy.deepcopy(model.state_dict())
        state["history"].append(record)
        state.update(epoch=epoch + 1, batch=0)
        if state["bad_epochs"] >= config.patience or state["epoch"] >= config.epochs:
            state["done"] = True
        checkpoint()
    bar.close()

    model.load_state_dict(best_weights)
    model.eval()
    summary = {"target": config.target, "train_trajectories": len(train_idx),
               "val_trajectories": len(val_idx), "epochs_run": state["epoch"],
               "best_epoch": state["best_epoch"], "resumed_from": resumed,
               "history": state["history"]}
    for round_ in range(config.hard_negative_rounds):
        probs = [1 / (1 + np.exp(-z)) for z in step_logits(model, features, train_idx,
                                                           config.batch_size)]
        mined = hard_negative_weights(probs, [labels[i] for i in train_idx],
                                      [weights[i] for i in train_idx],
                                      config.hard_negative_factor)
        for i, w in zip(train_idx, mined):
            weights[i] = w
        summary.setdefault("hard_negative_rounds", []).append(
            refine(model, features, labels, weights, outcomes, train_idx, val_idx, config,
                   round_ + 1))
    summary = _finish(model, trajectories, features, labels, train_idx, val_idx, config, out_dir,
                      summary)
    if not keep_checkpoint:  # its optimizer state and weight copies are of no use any more
        checkpoint_path.unlink(missing_ok=True)
    return summary

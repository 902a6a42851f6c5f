"""Training the PRM head on cached step embeddings.

Reads top to bottom: split by question → standardize → build the head → resume if a checkpoint
exists → epochs of masked BCE with AdamW → validation, early stopping, best weights kept → save.

Reproducible on CPU: the thread count is pinned, each epoch's order comes from a generator seeded
by (seed, epoch), and checkpoints hold the model, optimizer, dropout RNG state and position. A
run killed at any point and started again with the same command resumes from its last checkpoint
and ends with weights bit-identical to an uninterrupted run.

An ORM is the same head with ``target="outcome"``: one label, the final answer's correctness, on
the last step of each trajectory.

Under torchrun (``prmkit.distributed``) with K processes the head is wrapped in
DistributedDataParallel and each batch, drawn by every rank from the same seeded order, is split
between them: rank r takes rows r, r + K, ... and its loss is scaled (``batch_loss``) so that the
mean of the ranks' gradients is the gradient of the whole batch, as in one process. Rank 0
validates and broadcasts the result, so every rank stops at the same epoch and keeps the same
weights; rank 0 alone writes checkpoints, the model and the summary, and every rank returns that
summary. ``device`` ("cpu", "cuda", "auto", ...: ``devices.resolve_device``) is where the head
trains; under torchrun on GPUs, each process takes cuda:LOCAL_RANK.
"""

from __future__ import annotations

import contextlib
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

from prmkit import distributed
from prmkit._io import (OVERWRITE_HINT, check_output, file_lock, input_paths, jsonable,
                        remove_stale_temporaries, write_json)
from prmkit.devices import resolve_device
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
               config: TrainConfig, seed: int, rank: int = 0, world: int = 1, net=None,
               device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """The training loss of one batch, with whichever tricks ``config`` turns on.

    With ``world`` = K > 1, rank ``rank``'s share of it, for DistributedDataParallel (which
    averages gradients over ranks). The whole batch is collated and augmented as one process
    would (the prefix draw is per batch); then the rank keeps rows rank::K. Each loss term is a
    mean over the batch, sum / n (n: summed step weights, known outcomes, or step pairs), so the
    rank's term is its own sum over the whole batch's n, times K: the mean over ranks of
    K * sum_r / n is sum / n, and so is its gradient. A rank left without rows (a batch smaller
    than K) still runs a forward pass, on the batch's first row with its loss times 0, so that
    it takes part in the gradient all-reduce and adds nothing to it.

    ``net`` runs the forward pass (the DDP wrapper; ``model`` when None), ``model`` is the head
    inside it, whose auxiliary heads the multi-task terms read. Batches go to ``device``.
    """
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
    last = batch["step_mask"].sum(dim=1) - 1  # (B,) the last step kept
    parts = {"features": batch["features"], "step_mask": batch["step_mask"],
             "label_mask": batch["label_mask"], "targets": targets, "last": last,
             "known": torch.tensor([outcomes[i] is not None for i in rows])
             & (last + 1 == full_length),
             "truth": torch.tensor([float(outcomes[i] or 0) for i in rows])}
    if w is not None:
        parts["weights"] = w
    scales = None
    if world > 1:
        whole = _denominators(parts)
        mine = list(range(rank, len(rows), world))
        parts = {k: v[mine or [0]] for k, v in parts.items()}
        local = _denominators(parts)
        # n_local / n of each term, times K; 0 for a rank without rows
        scales = [0.0 if not mine else float(a) / float(b) * world for a, b in zip(local, whole)]
    parts = _to_device(parts, device)
    net = model if net is None else net
    if not (config.outcome_weight or config.next_step_weight):
        logits = net(parts["features"], parts["step_mask"])  # (B, T)
        loss = step_loss(logits, parts["targets"], parts["label_mask"], parts.get("weights"),
                         config.focal_gamma)
        return loss if scales is None else loss * scales[0]

    def scaled(term: torch.Tensor, k: int) -> torch.Tensor:
        return term if scales is None else term * scales[k]

    logits, states, projected = net(parts["features"], parts["step_mask"], return_states=True)
    loss = scaled(step_loss(logits, parts["targets"], parts["label_mask"], parts.get("weights"),
                            config.focal_gamma), 0)
    if config.outcome_weight:
        last = parts["last"]
        read = model.outcome_head(states[torch.arange(len(last), device=device), last]
                                  ).squeeze(-1)  # (B,)
        loss = loss + scaled(config.outcome_weight * outcome_loss(read, parts["truth"],
                                                                  parts["known"]), 1)
    if config.next_step_weight:
        loss = loss + scaled(config.next_step_weight * next_step_loss(
            model.next_step_head(states), projected, parts["step_mask"]), 2)
    return loss


def _denominators(parts: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """What each loss term of ``batch_loss`` divides by, over the rows of ``parts``: the summed
    weights of the labelled steps (``step_loss``), the rows with a known outcome
    (``outcome_loss``), the steps followed by another (``next_step_loss``), each clamped as the
    loss clamps it."""
    mask = parts["label_mask"].float()
    w = mask if "weights" not in parts else parts["weights"] * mask
    pairs = parts["step_mask"][:, :-1] & parts["step_mask"][:, 1:]  # (B, T - 1)
    return [w.sum().clamp_min(1e-12), parts["known"].sum().clamp_min(1),
            pairs.sum().clamp_min(1)]


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on ``device``: on CUDA copied from pinned memory without blocking (the copy
    overlaps the work already queued); on the CPU the very same tensors."""
    if device.type == "cpu":
        return batch
    if device.type == "cuda":
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


def refine(model: PRMHead, features, labels, weights, outcomes, train_idx: list[int],
           val_idx: list[int], config: TrainConfig, round_: int, net=None,
           device: torch.device = torch.device("cpu")) -> dict:
    """One hard-negative round: a fresh optimizer, the same epochs and early stopping, the
    mined weights; the best weights are kept (not checkpointed: a killed run redoes it).
    ``net``: the DDP wrapper under torchrun (``batch_loss``)."""
    rank, world = distributed.rank(), distributed.world_size()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    best = (_on_main(lambda: evaluate(model, features, labels, val_idx, config.batch_size,
                                      device)["loss"]) if val_idx else math.inf)
    best_weights, best_epoch, bad = copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(config.epochs):
        seed = (config.seed * 100003 + 1000 * round_ + epoch)
        order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))
        (model if net is None else net).train()
        for b in range(math.ceil(len(train_idx) / config.batch_size)):
            rows = [train_idx[i] for i in order[b * config.batch_size:(b + 1) * config.batch_size]]
            with _autocast(device):
                loss = batch_loss(model, features, labels, weights, outcomes, rows, config,
                                  seed * 10007 + b, rank, world, net, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
        val = _on_main(lambda: evaluate(model, features, labels, val_idx, config.batch_size,
                                        device)["loss"]) if val_idx else -epoch
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


def _autocast(device) -> torch.autocast:
    """bfloat16 autocast for the training forward on a CUDA GPU that supports it (weights and
    optimizer stay float32); off elsewhere, so CPU results are unchanged."""
    device = torch.device(device)
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _on_main(compute):
    """``compute()`` done by rank 0 and sent to every rank: one answer for all to act on (a
    validation loss that decides early stopping, mined weights, a summary), where ranks on
    different GPUs could differ in the last bit. In one process, just ``compute()``."""
    return distributed.broadcast_object(compute() if distributed.is_main() else None)


@torch.no_grad()
def step_logits(model: PRMHead, features, indices: list[int], batch_size: int,
                device: torch.device = torch.device("cpu")) -> list[np.ndarray]:
    """The head's raw (uncalibrated) logits of each trajectory's steps."""
    model.eval()
    out = []
    for start in range(0, len(indices), batch_size):
        rows = indices[start:start + batch_size]
        b = collate(features, None, rows)
        logits = model(b["features"].to(device), b["step_mask"].to(device)).cpu()  # (B, T)
        out.extend(logits[r, :len(features[i])].numpy() for r, i in enumerate(rows))
    return out


def calibrate(model: PRMHead, trajectories, features, labels, val_idx: list[int],
              config: TrainConfig, device: torch.device = torch.device("cpu")
              ) -> tuple[Calibration, dict]:
    """Temperature and first-error threshold fitted on the validation split (``calibrate.py``);
    splits for the threshold come from ``meta["split"]`` where records carry one."""
    logits = step_logits(model, features, val_idx, config.batch_size, device)
    errors = [first_error(trajectories[i]) if config.target == "step" else None
              for i in val_idx]
    splits = [str(trajectories[i].meta.get("split", "all")) for i in val_idx]
    return fit_calibration(logits, [labels[i] for i in val_idx], errors, splits)


@torch.no_grad()
def evaluate(model: PRMHead, features, labels, indices: list[int], batch_size: int,
             device: torch.device = torch.device("cpu")) -> dict:
    """Validation loss (masked BCE over labelled steps) and step AUROC; the head runs on
    ``device``, the sums are taken on the CPU."""
    model.eval()
    loss_sum, n_labels, all_probs, all_labels = 0.0, 0, [], []
    for start in range(0, len(indices), batch_size):
        b = collate(features, labels, indices[start:start + batch_size])
        logits = model(b["features"].to(device), b["step_mask"].to(device)).cpu()
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
          overwrite: bool = False, keep_checkpoint: bool = False,
          device: str | torch.device = "cpu") -> dict:
    """Train a head, save it to ``out_dir`` (save_pretrained) and return a summary dict.

    If ``out_dir`` holds a checkpoint of the same run (same features, labels and configs),
    training resumes from it; a checkpoint of another run, or a finished model, is replaced only
    with ``overwrite``. The folder is locked while training: a second run into it is refused.
    The checkpoint is removed once the model is saved, unless ``keep_checkpoint``. ``device``:
    where the head trains (``devices.resolve_device``: "cpu", "cuda", "cuda:N", "mps", "auto").

    Under torchrun (after ``distributed.init()``, which the CLI and ``workflows`` call) every
    rank calls this with the same arguments: rank 0 holds the folder and writes in it, and a
    refusal there is raised on every rank.
    """
    device = resolve_device(device)
    if distributed.active() and device.type == "cuda" and device.index != distributed.local_rank():
        raise PrmkitError(f"under torchrun each process trains on its own GPU, "
                          f"cuda:LOCAL_RANK (cuda:{distributed.local_rank()} here), not {device}; "
                          "pass device 'cuda' or 'auto'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        refused = None
        if distributed.is_main():
            try:
                held.enter_context(file_lock(out_dir, wait=False,
                                             busy="another prmkit train is writing there"))
                check_out_dir(out_dir, overwrite)
                remove_stale_temporaries(out_dir)  # left by a run killed mid-write
            except PrmkitError as e:
                refused = e
        refused = distributed.broadcast_object(refused)  # no rank is left waiting for rank 0
        if refused is not None:
            raise refused
        if config.ensemble > 1:
            return _train_ensemble(trajectories, features, model_config, config, out_dir,
                                   progress, overwrite, keep_checkpoint, device)
        return _train(trajectories, features, model_config, config, out_dir, progress, overwrite,
                      keep_checkpoint, device)


def _train_ensemble(trajectories, features, model_config: PRMConfig, config: TrainConfig,
                    out_dir: Path, progress: bool, overwrite: bool,
                    keep_checkpoint: bool, device: torch.device = torch.device("cpu")) -> dict:
    """K members, each trained (and checkpointed, so resumable) in ``out_dir/members/k`` with
    its own seed on the same split; then joined into one ``EnsembleHead``, calibrated as one
    head, saved in ``out_dir``, and the member folders removed (by rank 0 under torchrun: the
    members are trained by every rank, the joining reads rank 0's folders)."""
    split_seed = config.seed if config.split_seed is None else config.split_seed
    summaries = []
    for k in range(config.ensemble):
        member = replace(config, seed=config.seed + k, split_seed=split_seed, ensemble=1,
                         calibrate=False)
        # members keep their checkpoints until the ensemble is saved: a killed run resumes
        summaries.append(train(trajectories, features, model_config, member,
                               out_dir / "members" / str(k), progress=progress,
                               overwrite=overwrite, keep_checkpoint=True, device=device))

    def join() -> dict:
        members = [PRMHead.from_pretrained(out_dir / "members" / str(k))
                   for k in range(config.ensemble)]
        model = EnsembleHead.from_members(members).to(device)
        labels = [training_labels(t, config.target) for t in trajectories]
        train_idx, val_idx = _split(trajectories, labels, config)
        summary = {"target": config.target, "ensemble": config.ensemble, "members": summaries,
                   "train_trajectories": len(train_idx), "val_trajectories": len(val_idx)}
        summary = _finish(model, trajectories, features, labels, train_idx, val_idx, config,
                          out_dir, summary, device)
        if not keep_checkpoint:
            shutil.rmtree(out_dir / "members")
        return summary

    return _on_main(join)


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
            config: TrainConfig, out_dir: Path, summary: dict,
            device: torch.device = torch.device("cpu")) -> dict:
    """Calibrate on validation (when asked), save the model, add the final losses to the
    summary and write it (rank 0's work under torchrun)."""
    if config.calibrate and val_idx:
        model.calibration, summary["calibration"] = calibrate(
            model, trajectories, features, labels, val_idx, config, device)
    model.save_pretrained(out_dir, training=asdict(config))
    if val_idx:
        val = evaluate(model, features, labels, val_idx, config.batch_size, device)
        summary.update(val_loss=val["loss"], val_step_auroc=val["step_auroc"])
    summary["train_loss"] = evaluate(model, features, labels, train_idx, config.batch_size,
                                     device)["loss"]
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


@contextlib.contextmanager
def model_folder_for(out_dir: str | os.PathLike, data, overwrite: bool):
    """The folder ``prmkit train`` writes, checked before any work (not an input, no finished
    model unless ``overwrite``), created and locked against a second run; under torchrun rank 0
    holds the lock for all (the others would find it locked)."""
    distributed.init()
    out_dir = check_output(out_dir, input_paths(data), folder=True)
    check_out_dir(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (file_lock(out_dir, wait=False, busy="another prmkit train is writing there")
          if distributed.is_main() else contextlib.nullcontext()):
        yield out_dir


def _train(trajectories: list[Trajectory], features: list[np.ndarray], model_config: PRMConfig,
           config: TrainConfig, out_dir: Path, progress: bool, overwrite: bool,
           keep_checkpoint: bool, device: torch.device = torch.device("cpu")) -> dict:
    torch.set_num_threads(config.num_threads)
    rank, world = distributed.rank(), distributed.world_size()
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
    # every rank computes the same statistics from the same features (float64 sums)
    model.set_feature_stats(*feature_stats(features, train_idx))
    model.to(device)
    if rank > 0:  # the same weights everywhere, but each rank its own dropout masks
        torch.manual_seed(_rank_seed(config.seed, rank, 0, 0))
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
    # rank 0 reads the checkpoint and sends it: every rank resumes from the same state
    ckpt = _on_main(lambda: load_checkpoint(checkpoint_path)
                    if checkpoint_path.exists() and not overwrite else None)
    if ckpt is not None:
        if ckpt["fingerprint"] != fingerprint:
            raise PrmkitError(f"{checkpoint_path} belongs to a different run (other data or "
                              f"settings); {OVERWRITE_HINT} to start again, or use another "
                              "out_dir (--out)")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        best_weights = ckpt["best_weights"]
        state = json.loads(ckpt["state"])
        # checkpoints written before torchrun support hold rank 0's CPU state alone
        saved = [ckpt["rng"], *ckpt.get("rank_rng", [])]
        if ckpt.get("rng_device", "cpu") == device.type and rank < len(saved):
            _set_rng_state(saved[rank], device)
        else:  # saved by fewer processes, or on another kind of device
            torch.manual_seed(_rank_seed(config.seed, rank, state["epoch"], state["batch"]))
        resumed = {"epoch": state["epoch"], "batch": state["batch"]}
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def checkpoint() -> None:
        states = distributed.all_gather_object(_rng_state(device))  # every rank's dropout RNG
        if distributed.is_main():
            save_checkpoint(checkpoint_path, {
                "fingerprint": fingerprint, "model": _cpu(model.state_dict()),
                "optimizer": _cpu(optimizer.state_dict()), "best_weights": _cpu(best_weights),
                "state": json.dumps(state), "rng": states[0], "rank_rng": states[1:],
                "rng_device": device.type})

    total = config.epochs * batches_per_epoch
    done_batches = state["epoch"] * batches_per_epoch + state["batch"]
    bar = tqdm(total=total, initial=min(done_batches, total), unit="batch", desc="train",
               disable=not progress or state["done"] or not distributed.is_main(), leave=False)
    lengths = [trajectories[i].num_steps for i in train_idx]
    while not state["done"] and state["epoch"] < config.epochs:
        epoch = state["epoch"]
        pool = ([train_idx[j] for j in curriculum_indices(lengths, epoch, config.epochs)]
                if config.curriculum else train_idx)
        order = torch.randperm(len(pool),
                               generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        batches_per_epoch = math.ceil(len(pool) / config.batch_size)
        net.train()
        for b in range(state["batch"], batches_per_epoch):
            rows = [pool[i] for i in order[b * config.batch_size:(b + 1) * config.batch_size]]
            with _autocast(device):
                loss = batch_loss(model, features, labels, weights, outcomes, rows, config,
                                  seed=(config.seed * 100003 + epoch) * 10007 + b, rank=rank,
                                  world=world, net=net, device=device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # under DDP, returns with the gradients averaged over ranks
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
            val = _on_main(lambda: evaluate(model, features, labels, val_idx, config.batch_size,
                                            device))
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
        # rank 0 mines, every rank trains on its weights
        mined = _on_main(lambda: hard_negative_weights(
            [1 / (1 + np.exp(-z)) for z in step_logits(model, features, train_idx,
                                                       config.batch_size, device)],
            [labels[i] for i in train_idx], [weights[i] for i in train_idx],
            config.hard_negative_factor))
        for i, w in zip(train_idx, mined):
            weights[i] = w
        summary.setdefault("hard_negative_rounds", []).append(
            refine(model, features, labels, weights, outcomes, train_idx, val_idx, config,
                   round_ + 1, net, device))
    summary = _on_main(lambda: _finish(model, trajectories, features, labels, train_idx,
                                       val_idx, config, out_dir, summary, device))
    if not keep_checkpoint and distributed.is_main():
        # its optimizer state and weight copies are of no use any more
        checkpoint_path.unlink(missing_ok=True)
    return summary


def _rank_seed(seed: int, rank: int, epoch: int, batch: int) -> int:
    """The dropout seed of a rank that has no saved RNG state to continue from."""
    return ((seed * 100003 + epoch) * 10007 + batch) * 1009 + rank


def _rng_state(device: torch.device) -> torch.Tensor:
    """The state of the generator that dropout on ``device`` draws from."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return torch.get_rng_state()


def _set_rng_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)
    else:
        torch.set_rng_state(state)


def _cpu(obj):
    """``obj`` (a state dict, nested) with every tensor on the CPU: a checkpoint written on a GPU
    loads anywhere, and ``load_state_dict`` moves it back to the parameters' device."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj

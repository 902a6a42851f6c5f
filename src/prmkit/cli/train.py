"""``prmkit train``: embed labelled trajectories and train a PRM head."""

from __future__ import annotations

import argparse

from prmkit.cli.common import (add_common, add_device, add_embed_args, add_format, cache_dir,
                               command, device, embed_config, stage_config)
from prmkit.errors import PrmkitError
from prmkit.embed import describe
from prmkit.train import TrainConfig

EXAMPLES = """examples:
  prmkit train examples/quickstart.jsonl --out runs/quick
  prmkit train prm800k/phase2_train.jsonl --format prm800k --out runs/prm800k --epochs 20
  prmkit train data.jsonl --out runs/minilm --backbone minilm --context none
  prmkit train data.jsonl --out runs/lora --finetune lora --device cuda --max-minutes 30"""


def add_parser(sub) -> None:
    p = command(sub, "train", "embed labelled trajectories and train a PRM head",
                epilog=EXAMPLES)
    p.add_argument("data", help="labelled trajectories (see README: the record format)")
    add_format(p)
    p.add_argument("--out", required=True, help="folder for the model and its summary")
    p.add_argument("--target", choices=("step", "outcome"), default="step",
                   help="step: a PRM on step labels; outcome: an ORM on final-answer correctness")
    d = TrainConfig()
    _add_training(p, d)
    _add_tricks(p, d)
    _add_head(p)
    _add_finetune(p)
    add_embed_args(p)
    add_device(p)
    add_common(p)


def _add_training(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=d.epochs, help="most epochs to train")
    t.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="trajectories per batch")
    t.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="AdamW weight decay")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of questions held out for validation and early stopping")
    t.add_argument("--patience", type=int, default=d.patience,
                   help="epochs without a better validation loss before stopping")
    t.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the split, the initialisation and the batch order")
    t.add_argument("--threads", type=int, default=d.num_threads,
                   help="torch threads, pinned for reproducible results")
    t.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="batches between checkpoints (0: each epoch)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a trained model or a checkpoint of a different run in --out")
    t.add_argument("--keep-checkpoint", action="store_true",
                   help="keep checkpoint.pt (optimizer state, weight copies) after a finished run")
    t.add_argument("--no-calibrate", action="store_true",
                   help="skip fitting a temperature and a first-error threshold on the "
                        "validation split")
    t.add_argument("--baselines", action="store_true",
                   help="also train the same head on content-free features (step lengths, "
                        "noise), saved beside the model for `prmkit eval`")


def _add_tricks(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    k = p.add_argument_group("training tricks (all off by default; README, \"Training tricks\")")
    k.add_argument("--label-smoothing", type=float, default=d.label_smoothing, metavar="EPS",
                   help="labels become y (1 - 2 EPS) + EPS")
    k.add_argument("--focal-gamma", type=float, default=d.focal_gamma, metavar="GAMMA",
                   help="focal loss |y - p|^GAMMA * BCE (0: plain BCE)")
    k.add_argument("--balance", action="store_true",
                   help="right and wrong steps weigh the same in the loss")
    k.add_argument("--length-balance", action="store_true",
                   help="right and wrong steps weigh the same within each step-length bin")
    k.add_argument("--prefix-augment", action="store_true",
                   help="train on random prefixes (little effect on the default causal head)")
    k.add_argument("--curriculum", action="store_true",
                   help="short solutions first, rising to all by the middle epoch")
    k.add_argument("--outcome-weight", type=float, default=d.outcome_weight, metavar="ALPHA",
                   help="multi-task: an outcome head at the last step, loss weight ALPHA")
    k.add_argument("--next-step-weight", type=float, default=d.next_step_weight, metavar="BETA",
                   help="multi-task: next-step prediction, loss weight BETA")
    k.add_argument("--hard-negative-rounds", type=int, default=d.hard_negative_rounds,
                   help="extra rounds with confident mistakes weighted x2")
    k.add_argument("--ensemble", type=int, default=d.ensemble, metavar="K",
                   help="K heads with different seeds, saved as one model: their mean "
                        "probability, their spread as uncertainty (score shows it)")


def _add_head(p: argparse.ArgumentParser) -> None:
    h = p.add_argument_group("head (defaults: the reference spec)")
    h.add_argument("--head", choices=("transformer", "linear"), default="transformer",
                   help="transformer: the spec's head; linear: per-step logistic regression on "
                        "the same features (a baseline head)")
    h.add_argument("--hidden-size", type=int, default=512, help="width of the step transformer")
    h.add_argument("--num-layers", type=int, default=4, help="transformer layers over steps")
    h.add_argument("--num-heads", type=int, default=8, help="attention heads")
    h.add_argument("--dropout", type=float, default=0.1, help="dropout in the head")
    h.add_argument("--max-steps", type=int, default=512,
                   help="longest solution the head takes, in steps")
    h.add_argument("--bidirectional", action="store_true",
                   help="let steps attend to later steps (the spec's option; default is causal)")


def _add_finetune(p: argparse.ArgumentParser) -> None:
    from prmkit.train.finetuned import DEFAULT_BACKBONE_LR, FinetuneConfig

    d = FinetuneConfig()
    f = p.add_argument_group("fine-tuning the backbone (README, \"Fine-tuning the backbone\")")
    f.add_argument("--finetune", choices=("lora", "full"), default=None,
                   help="train the backbone with the head, one pass per solution: lora "
                        "(adapters on the layers below the one read, through peft) or full "
                        "(every weight, float32); default: frozen backbone, cached vectors")
    f.add_argument("--lora-rank", type=int, default=d.lora_rank, help="LoRA rank r")
    f.add_argument("--lora-alpha", type=float, default=d.lora_alpha,
                   help="LoRA alpha (the update is scaled by alpha / r)")
    f.add_argument("--lora-dropout", type=float, default=d.lora_dropout, help="LoRA dropout (default: 0)")
    f.add_argument("--lora-targets", nargs="+", default=None, metavar="NAME",
                   help="linear layers to adapt, by name (e.g. q_proj v_proj; default: every "
                        "linear layer of the adapted blocks)")
    f.add_argument("--backbone-lr", type=float, default=None,
                   help="learning rate of the backbone's weights (default: "
                        + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_BACKBONE_LR.items())
                        + "; --lr is the head's)")
    f.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, more time")
    f.add_argument("--grad-accum", type=int, default=d.grad_accum,
                   help="run each batch as at least this many micro-batches, gradients "
                        "accumulated (the same gradient, less memory)")
    f.add_argument("--micro-batch-tokens", type=int, default=d.micro_batch_tokens,
                   help="padded tokens per micro-batch (solutions grouped by length)")
    f.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this many minutes (the best weights so far are "
                        "kept)")
    f.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="optimizer steps between validations (0: once an epoch)")


def tricks(args) -> dict:
    """The training tricks set on the command line, as TrainConfig fields."""
    return {"label_smoothing": args.label_smoothing, "focal_gamma": args.focal_gamma,
            "balance": args.balance, "length_balance": args.length_balance,
            "prefix_augment": args.prefix_augment, "curriculum": args.curriculum,
            "outcome_weight": args.outcome_weight, "next_step_weight": args.next_step_weight,
            "hard_negative_rounds": args.hard_negative_rounds, "ensemble": args.ensemble}


def cmd_train(args) -> dict:
    from prmkit.workflows import train_prm

    config = stage_config(TrainConfig, target=args.target, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                          val_fraction=args.val_fraction, patience=args.patience, seed=args.seed,
                          num_threads=args.threads, checkpoint_every=args.checkpoint_every,
                          calibrate=not args.no_calibrate, **tricks(args))
    head = {"hidden_size": args.hidden_size, "num_layers": args.num_layers,
            "num_heads": args.num_heads, "dropout": args.dropout, "max_steps": args.max_steps,
            "causal": not args.bidirectional, "head_type": args.head}
    if args.finetune:
        return _finetune(args, config, head)
    summary = train_prm(args.data, args.out, embed_config(args), head, config, cache_dir(args),
                        progress=not args.no_progress, overwrite=args.overwrite,
                        keep_checkpoint=args.keep_checkpoint, format=args.format,
                        baselines=args.baselines, device=device(args))
    if not args.json:
        print(describe(summary["embedding"]))
        if summary.get("resumed_from"):
            r = summary["resumed_from"]
            print(f"resumed from the checkpoint at epoch {r['epoch'] + 1}, batch {r['batch']}")
        if "ensemble" in summary:
            line = (f"trained an ensemble of {summary['ensemble']} {summary['target']} heads "
                    f"(best epochs {', '.join(str(m['best_epoch']) for m in summary['members'])})"
                    f", train loss {summary['train_loss']:.4f}")
        else:
            line = (f"trained {summary['target']} head: {summary['epochs_run']} epochs, best "
                    f"epoch {summary['best_epoch']}, train loss {summary['train_loss']:.4f}")
        if summary.get("val_loss") is not None:
            auroc = summary.get("val_step_auroc")
            line += (f", val loss {summary['val_loss']:.4f}, val step AUROC "
                     f"{'n/a' if auroc is None else f'{auroc:.3f}'}")
        print(line)
        if summary.get("calibration"):
            c = summary["calibration"]
            threshold = c.get("threshold")
            how = (f"temperature 1 ({c['temperature_skipped']})" if "temperature_skipped" in c
                   else f"temperature {c['temperature']:.3g}")
            print(f"calibrated on the validation split: {how}, "
                  f"ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}; first-error threshold "
                  + ("none (no item with a known first error)" if threshold is None else
                     f"{threshold:.3g} (F1 {c['threshold_f1']:.3f})"))
        print(f"saved to {summary['out']}")
    return summary


def _finetune(args, config: TrainConfig, head: dict) -> dict:
    from prmkit.train.finetune import FinetuneConfig, finetune_prm

    if args.baselines:
        raise PrmkitError("--baselines trains heads on cached features; train them with a "
                          "frozen run (prmkit train --baselines) and compare in prmkit eval")
    ft = stage_config(FinetuneConfig, mode=args.finetune, lora_rank=args.lora_rank,
                      lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      lora_targets=tuple(args.lora_targets) if args.lora_targets else None,
                      backbone_lr=args.backbone_lr,
                      gradient_checkpointing=args.gradient_checkpointing,
                      grad_accum=args.grad_accum, micro_batch_tokens=args.micro_batch_tokens,
                      max_minutes=args.max_minutes,
                      eval_every=args.eval_every)
    summary = finetune_prm(args.data, args.out, embed_config(args), head, config, ft,
                           progress=not args.no_progress, overwrite=args.overwrite,
                           format=args.format, device=device(args))
    if not args.json:
        last = next((h for h in reversed(summary["history"]) if "val_loss" in h), None)
        line = (f"fine-tuned {ft.mode} ({summary['trainable_backbone_parameters']:,} backbone "
                f"parameters trained): {summary['optimizer_steps']} steps in "
                f"{summary['minutes']:.1f} min, stopped by {summary['stopped_by']}, best step "
                f"{summary['best_step']}")
        if last is not None:
            best = min((h for h in summary["history"] if "val_loss" in h),
                       key=lambda h: h["val_loss"])
            line += (f", val loss {best['val_loss']:.4f}, val step AUROC "
                     f"{best['val_step_auroc']:.3f}")
        print(line)
        print(f"saved to {summary['out']}")
    return summary

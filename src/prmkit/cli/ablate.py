"""``prmkit ablate``: each training trick on and off, paired over seeds."""

from __future__ import annotations

from dataclasses import asdict

from prmkit.ablate import AblateConfig
from prmkit.cli.common import (add_common, add_device, add_embed_args, add_format, cache_dir,
                               command, device, embed_config, stage_config)
from prmkit.errors import PrmkitError
from prmkit.train import TrainConfig

EXAMPLES = """examples:
  prmkit ablate                                  # the demo world, 5 seeds (~15 min)
  prmkit ablate --train train.jsonl --test test.jsonl --seeds 3
  prmkit ablate --variants "focal loss (gamma 2)" "linear head" --seeds 3"""


def add_parser(sub) -> None:
    p = command(sub, "ablate", "train with each trick on and off on the same data over several "
                "seeds; paired differences with intervals (the demo world by default)",
                epilog=EXAMPLES)
    p.add_argument("--train", default=None, metavar="DATA",
                   help="training data (default: the demo world, 200 problems x 8)")
    p.add_argument("--test", default=None, metavar="DATA",
                   help="held-out data, with --train (pools with answers give best-of-N)")
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="one data set split by question instead of --train/--test, e.g. "
                        "`--data v0 --format champ` (CHAMP's annotated solutions)")
    p.add_argument("--test-share", type=float, default=0.25,
                   help="with --data: share of questions held out (one problem-level split)")
    add_format(p)
    p.add_argument("--seeds", type=int, default=5, help="seeds per variant (at least 2)")
    p.add_argument("--n", type=int, default=16, help="best-of-N at this N")
    p.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                   help="only these variants (default: all; names as in the table)")
    a = AblateConfig()
    p.add_argument("--sizes", type=float, nargs="+", default=list(a.sizes),
                   help="shares of the training questions for the linear-vs-transformer table")
    p.add_argument("--epochs", type=int, default=a.train.epochs, help="most epochs per head")
    p.add_argument("--out", default="runs/ablate", help="folder for ablate.md and results.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    add_embed_args(p)
    add_device(p)
    add_common(p)


def cmd_ablate(args) -> dict:
    from prmkit.ablate import VARIANTS, markdown
    from prmkit.workflows import ablate

    if (args.train is None) != (args.test is None):
        raise PrmkitError("give both --train and --test, or neither (the demo world)")
    if args.data is not None and args.train is not None:
        raise PrmkitError("give --data or --train/--test, not both")
    base = AblateConfig()
    train = stage_config(TrainConfig, **{**asdict(base.train), "epochs": args.epochs})
    config = stage_config(AblateConfig, seeds=tuple(range(args.seeds)), n=args.n,
                          variants=tuple(args.variants or VARIANTS), sizes=tuple(args.sizes),
                          train=train, embed=embed_config(args))
    results = ablate(config, args.train, args.test, args.format, args.out, cache_dir(args),
                     progress=not args.no_progress, overwrite=args.overwrite, data=args.data,
                     test_share=args.test_share, device=device(args))
    if not args.json:
        print("\n".join(markdown(results)))
        print(f"wrote ablate.md and results.json to {args.out}")
    return results

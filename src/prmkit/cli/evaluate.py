"""``prmkit eval``: every metric the data support, beside content-free baselines."""

from __future__ import annotations

from prmkit.cli.common import (SCORER_HELP, FORMATS, add_common, add_device, add_format,
                               cache_dir, command, device)

EXAMPLES = """examples:
  prmkit eval runs/m processbench/ --format processbench --out runs/m-eval
  prmkit eval runs/m test.jsonl --threshold-from dev.jsonl"""


def add_parser(sub) -> None:
    p = command(sub, "eval", "every metric the data support (first-error F1, step AUROC and "
                "F1, ECE, agreement with the labels), per split, beside content-free baselines",
                epilog=EXAMPLES)
    p.add_argument("model", help=SCORER_HELP)
    p.add_argument("data", help="labelled trajectories: a file, or a folder of splits "
                   "(ProcessBench: one file per split)")
    add_format(p)
    th = p.add_mutually_exclusive_group()
    th.add_argument("--threshold", type=float, default=None,
                    help="flag a step when its probability is below this (default: the "
                         "threshold saved with each model, chosen on its validation split)")
    th.add_argument("--threshold-from", default=None, metavar="DEV",
                    help="choose each scorer's threshold on this dev data (average F1 over its "
                         "splits), never on the data evaluated")
    p.add_argument("--dev-format", choices=FORMATS, default=None,
                   help="format of DEV (default: --format)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write eval.json, eval.md and reliability.png here")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    add_device(p)
    add_common(p)


def cmd_eval(args) -> dict:
    from prmkit.evaluate import markdown
    from prmkit.workflows import eval_model

    report = eval_model(args.model, args.data, args.format, args.threshold, args.threshold_from,
                        args.dev_format, args.out, cache_dir(args),
                        progress=not args.no_progress, device=device(args))
    if not args.json:
        print("\n".join(markdown(report)))
        if args.out:
            print(f"wrote eval.json, eval.md and reliability.png to {args.out}")
    return report

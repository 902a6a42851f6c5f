"""``prmkit score``: per-step probabilities and every aggregate, from any scorer."""

from __future__ import annotations

import json
import sys

from prmkit.cli.common import (SCORER_HELP, add_common, add_device, add_format, cache_dir,
                               command, device)
from prmkit.embed import describe

EXAMPLES = """examples:
  prmkit score runs/quick examples/quickstart.jsonl
  prmkit score runs/quick candidates.jsonl --out scores.jsonl --json"""


def add_parser(sub) -> None:
    p = command(sub, "score", "score trajectories with a trained PRM: per-step probabilities "
                "and every aggregate", epilog=EXAMPLES)
    p.add_argument("model", help=SCORER_HELP)
    p.add_argument("data", help="trajectories (labels are ignored)")
    add_format(p)
    p.add_argument("--out", help="write one JSON line per trajectory here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--flag-errors", action="store_true",
                   help="add each solution's predicted first error (the first step whose "
                        "probability is below the model's saved threshold; -1 for none)")
    p.add_argument("--batch-size", type=int, default=64, help="trajectories per head batch")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    add_device(p)
    add_common(p)


def cmd_score(args) -> dict:
    from prmkit.workflows import score_data

    rows, report = score_data(args.model, args.data, args.out, cache_dir(args),
                              args.batch_size, progress=not args.no_progress,
                              overwrite=args.overwrite, format=args.format,
                              flag_errors=args.flag_errors, device=device(args))
    if args.json and not args.out:
        for row in rows:
            print(json.dumps(row, allow_nan=False))
        return {}
    if not args.json:
        if report is not None:
            print(describe(report), file=sys.stderr)
        if args.out:
            print(f"wrote {len(rows)} scored trajectories to {args.out}")
        else:
            for row in rows:
                scores = " ".join(f"{name}={value:.4g}" for name, value in row["scores"].items())
                steps = " ".join(f"{p:.3f}" for p in row["step_probs"])
                flagged = f"  first error: {row['first_error']}" if "first_error" in row else ""
                print(f"#{row['index']} {row['id']}  {scores}  steps: {steps}{flagged}")
    return {"scored": len(rows), "out": args.out, "embedding": report}

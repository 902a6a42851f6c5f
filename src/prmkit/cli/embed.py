"""``prmkit embed``: fill the embedding cache; ``--layers`` compares layers for a PRM."""

from __future__ import annotations

from prmkit.cli.common import (add_common, add_device, add_embed_args, add_format, cache_dir,
                               command, device, embed_config)
from prmkit.embed import describe
from prmkit.errors import PrmkitError

EXAMPLES = """examples:
  prmkit embed data.jsonl                        # fill the cache, resumable
  prmkit embed data.jsonl --layers 8 15 22 -1    # which layer serves a PRM best"""


def add_parser(sub) -> None:
    p = command(sub, "embed", "embed every step into the cache (resumable); with --layers, "
                "compare layers for a PRM", epilog=EXAMPLES)
    p.add_argument("data", help="trajectories")
    add_format(p)
    p.add_argument("--shard-size", type=int, default=2048,
                   help="trajectories per cache shard: an interrupted run loses at most one")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="compare these layers' hidden states: embed each (one pass, stopped at "
                        "the deepest), train a small head per layer with 5 seeds (each its own "
                        "20%% question split), report validation step AUROC")
    add_embed_args(p)
    add_device(p)
    add_common(p)


def cmd_embed(args) -> dict:
    from prmkit.workflows import compare_layers, embed_data

    if args.shard_size < 1:
        raise PrmkitError("--shard-size must be positive")
    config = embed_config(args)
    if args.layers:
        rows = compare_layers(args.data, config, args.layers, cache_dir(args),
                              progress=not args.no_progress, format=args.format,
                              device=device(args))
        if not args.json:
            print(f"{'layer':>16} {'val step AUROC':>15} {'(std, 5 seeds)':>15} {'val loss':>9}")
            for r in rows:
                print(f"{r['layer']:>16} {r['val_step_auroc']:>15.3f} "
                      f"{r['val_step_auroc_std']:>15.3f} {r['val_loss']:>9.4f}")
        return {"layers": rows}
    _, _, report = embed_data(args.data, config, cache_dir(args), progress=not args.no_progress,
                              shard_trajectories=args.shard_size, format=args.format,
                              device=device(args))
    if not args.json:
        print(describe(report))
    return report

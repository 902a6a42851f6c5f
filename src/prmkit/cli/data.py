"""``prmkit data``: convert, describe and generate step-labelled data."""

from __future__ import annotations

from prmkit._io import check_output
from prmkit.cli.common import (FORMATS, HelpFormatter, add_common, add_format, command,
                               stage_config)

EXAMPLES = {
    "convert": """examples:
  prmkit data convert phase2_train.jsonl prm800k.jsonl --from prm800k
  prmkit data convert data.jsonl trl.jsonl --from jsonl --to trl""",
    "stats": """examples:
  prmkit data stats data.jsonl
  prmkit data stats phase2_train.jsonl --format prm800k --json""",
    "overlap": """examples:
  prmkit data overlap test.jsonl train.jsonl""",
    "synthetic": """examples:
  prmkit data synthetic --out world.jsonl --problems 100 --pool 16""",
}


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="convert, describe and generate step-labelled data",
                       description="convert, describe and generate step-labelled data",
                       formatter_class=HelpFormatter)
    data = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = command(data, "convert", "read one format, write another", epilog=EXAMPLES["convert"])
    q.add_argument("source", help="file, folder, or Hugging Face dataset name (needs network)")
    q.add_argument("dest", help="output file (written atomically)")
    q.add_argument("--from", dest="src_format", choices=FORMATS, required=True,
                   help="format of the source")
    q.add_argument("--to", dest="dst_format", choices=FORMATS, default="jsonl",
                   help="format to write")
    q.add_argument("--split", default=None, help="split, for hub data sets")
    q.add_argument("--overwrite", action="store_true", help="replace an existing dest file")
    add_common(q)
    q = command(data, "stats", "items, steps, label balance, step lengths, too-coarse and "
                "too-fine steps; candidate-pool statistics when questions repeat",
                epilog=EXAMPLES["stats"])
    q.add_argument("source", help="file, folder, or Hugging Face dataset name")
    add_format(q)
    q.add_argument("--split", default=None, help="split, for hub data sets")
    add_common(q)
    q = command(data, "overlap", "questions of A that also appear in B (after normalisation): "
                "check evaluation data against training data", epilog=EXAMPLES["overlap"])
    q.add_argument("a", help="the data to check (e.g. a test set)")
    q.add_argument("b", help="the data to check against (e.g. the training set)")
    q.add_argument("--format-a", choices=FORMATS, default="jsonl", help="format of A")
    q.add_argument("--format-b", choices=FORMATS, default="jsonl", help="format of B")
    q.add_argument("--show", type=int, default=10, help="list at most this many questions")
    add_common(q)
    q = command(data, "synthetic", "write pools of the built-in synthetic world as JSONL",
                epilog=EXAMPLES["synthetic"])
    q.add_argument("--out", required=True, help="JSONL file to write")
    q.add_argument("--problems", type=int, default=300, help="problems to generate")
    q.add_argument("--pool", type=int, default=64, help="candidates per problem")
    q.add_argument("--seed", type=int, default=0, help="seed of the world")
    q.add_argument("--label-policy", choices=("first_error", "value"), default="first_error",
                   help="first_error: unlabelled after the first wrong step (PRM800K); value: "
                        "every later step labelled wrong")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_common(q)


def cmd_data(args) -> dict:
    from prmkit.data import formats

    if args.data_command == "convert":
        summary = formats.convert(args.src_format, args.source, args.dst_format, args.dest,
                                  split=args.split, overwrite=args.overwrite)
        if not args.json:
            print(f"read {summary['read']} trajectories from {args.source}; wrote {args.dest}")
            for key, value in summary.items():
                if key != "read":
                    print(f"  {key}: {value}")
        return summary
    if args.data_command == "stats":
        from prmkit.data.pools import group_pools, pool_stats

        trajectories = formats.load(args.format, args.source, args.split)
        result = formats.stats(trajectories)
        pools = [p for p in group_pools(trajectories)
                 if len(p) >= 2 and all(t.outcome is not None for t in p)]
        if pools:
            result["pools"] = {"count": len(pools), **pool_stats(pools)}
        if not args.json:
            _print_stats(result)
        return result
    if args.data_command == "overlap":
        a = formats.load(args.format_a, args.a)
        b = formats.load(args.format_b, args.b)
        found = formats.overlap(a, b)
        n_a = len({t.question for t in a})
        if not args.json:
            print(f"{len(found)} of {n_a} questions of {args.a} also appear in {args.b}")
            for question in found[:args.show]:
                print(f"  {question[:100]!r}")
        return {"overlap": len(found), "questions_a": n_a, "questions": found}
    from prmkit import synthetic
    from prmkit.generate.solver import make_world
    from prmkit.records import write_jsonl

    check_output(args.out, overwrite=args.overwrite)
    config = stage_config(synthetic.WorldConfig, label_policy=args.label_policy)
    world = make_world(args.problems, args.pool, args.seed, config)
    n = write_jsonl(args.out, [t for p in world for t in p.trajectories])
    if not args.json:
        print(f"wrote {n} trajectories ({args.problems} problems x {args.pool}) to {args.out}")
    return {"trajectories": n, "out": args.out}


def _print_stats(result: dict) -> None:
    from prmkit.synthetic import format_comparison

    print(f"items {result['items']}, steps {result['steps']}")
    for key in ("steps_per_item", "step_chars", "step_words"):
        d = result[key]
        print(f"  {key:<15} mean {d['mean']:.1f}  median {d['median']:.1f}  p90 {d['p90']:.1f}")
    for key in ("labels", "label_kinds", "outcomes"):
        counts = ", ".join(f"{name} {count}" for name, count in result[key].items())
        print(f"  {key.replace('_', ' '):<15} {counts}")
    print(f"  coarse steps    {result['coarse_steps']} (several claims in one step)")
    print(f"  fine steps      {result['fine_steps']} (a few words)")
    if "pools" in result:
        pools = dict(result["pools"])
        print(f"candidate pools: {pools.pop('count')} questions with several solutions")
        for line in format_comparison(pools):
            print("  " + line)

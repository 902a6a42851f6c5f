"""The ``prmkit`` command: a thin layer over ``prmkit.workflows``.

Every command takes ``--json`` (machine-readable output on stdout). Bad input ends with a message
naming file, line and field on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from prmkit.embed import EmbedConfig, describe
from prmkit.embed.backbone import DTYPES, FEATURES, POOLINGS
from prmkit.embed.sources import DEFAULT_BACKBONE
from prmkit.errors import PrmkitError
from prmkit._io import jsonable
from prmkit.demo import DemoConfig
from prmkit.train import TrainConfig


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one to show: a None or False default is described in
    the option's own help (or means "off")."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _add_embed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("step embeddings")
    g.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help="short name (smollm2: SmolLM2-135M-Instruct, a causal LM reading each "
                        "step in context; minilm: the bundled all-MiniLM-L6-v2 sentence "
                        "encoder), a local folder, a .gguf file, or a Hugging Face id")
    g.add_argument("--features", choices=FEATURES, default=None,
                   help="hidden: pooled hidden states; surprise: the causal LM's own "
                        "log-probabilities of the step's tokens (needs its LM head and every "
                        "layer); both: side by side (default: both for a causal LM, hidden for "
                        "an encoder)")
    g.add_argument("--pooling", choices=POOLINGS, default="step",
                   help="step: mean of the step's tokens in context (default); last: the state "
                        "at the step's last token; prefix: mean over the whole prefix")
    g.add_argument("--layer", type=int, default=None,
                   help="hidden-state index, -1 the last (default: the backbone's measured "
                        "default, else the last)")
    g.add_argument("--context", choices=("prefix", "none"), default="prefix",
                   help="prefix: each step with the question and earlier steps; none: each step "
                        "on its own (cheap on large pools, but the vector lacks the question)")
    g.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="weights' dtype (default: the backbone's: bfloat16 for smollm2, else "
                        "float32)")
    g.add_argument("--max-length", type=int, default=None,
                   help="context limit in tokens (default: the backbone's); longer contexts are "
                        "cut from the left")
    g.add_argument("--cache", default=None, metavar="DIR",
                   help="embedding cache folder (default: $PRMKIT_CACHE/embeddings or "
                        "~/.cache/prmkit/embeddings)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the cache")


def _config(cls, **kwargs):
    """Build a stage config; its range checks become user errors (exit 2)."""
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise PrmkitError(str(e)) from None


def _embed_config(args) -> EmbedConfig:
    return _config(EmbedConfig, backbone=args.backbone, pooling=args.pooling, layer=args.layer,
                   dtype=args.dtype, max_length=args.max_length,
                   context=args.context, features=args.features)


def _cache_dir(args):
    return False if args.no_cache else args.cache


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prmkit", description="Process Reward Models: train on step-labelled data, score "
        "solutions step by step.", formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="embed a JSONL of labelled trajectories and train a PRM head",
                       formatter_class=_HelpFormatter)
    p.add_argument("data", help="JSONL of trajectories (see README: the record format)")
    p.add_argument("--out", required=True, help="folder for the model, checkpoint and summary")
    p.add_argument("--target", choices=("step", "outcome"), default="step",
                   help="step: a PRM on step labels; outcome: an ORM on final-answer correctness")
    d = TrainConfig()
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--weight-decay", type=float, default=d.weight_decay)
    t.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of questions held out for validation and early stopping")
    t.add_argument("--patience", type=int, default=d.patience)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--threads", type=int, default=d.num_threads,
                   help="torch threads, pinned for reproducible results")
    t.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="batches between checkpoints (0: each epoch)")
    t.add_argument("--overwrite", action="store_true",
                   help="discard a checkpoint of a different run in --out")
    h = p.add_argument_group("head (defaults: the reference spec)")
    h.add_argument("--hidden-size", type=int, default=512)
    h.add_argument("--num-layers", type=int, default=4)
    h.add_argument("--num-heads", type=int, default=8)
    h.add_argument("--dropout", type=float, default=0.1)
    h.add_argument("--max-steps", type=int, default=512)
    h.add_argument("--bidirectional", action="store_true",
                   help="let steps attend to later steps (the spec's option; default is causal)")
    _add_embed_args(p)
    _add_common(p)

    p = sub.add_parser("score", help="score trajectories with a trained PRM: per-step "
                       "probabilities and every aggregate",
                       formatter_class=_HelpFormatter)
    p.add_argument("model", help="folder written by `prmkit train`")
    p.add_argument("data", help="JSONL of trajectories (labels are ignored)")
    p.add_argument("--out", help="write one JSON line per trajectory here")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder")
    p.add_argument("--no-cache", action="store_true")
    _add_common(p)

    p = sub.add_parser("embed", help="embed every step of a JSONL into the cache (resumable); "
                       "with --layers, compare layers for a PRM",
                       formatter_class=_HelpFormatter)
    p.add_argument("data", help="JSONL of trajectories")
    p.add_argument("--shard-size", type=int, default=2048,
                   help="trajectories per cache shard: an interrupted run loses at most one")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="compare these layers' hidden states: embed each (one pass, stopped at "
                        "the deepest), train a small head per layer with 5 seeds (each its own "
                        "20%% question split), report validation step AUROC")
    _add_embed_args(p)
    _add_common(p)
    p = sub.add_parser("data", help="convert, describe and generate step-labelled data")
    data = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    formats = ["jsonl", "prm800k", "math-shepherd", "trl", "processbench", "champ"]
    q = data.add_parser("convert", help="read one format, write another",
                        formatter_class=_HelpFormatter)
    q.add_argument("source", help="file, folder, or Hugging Face dataset name (needs network)")
    q.add_argument("dest", help="output file (written atomically)")
    q.add_argument("--from", dest="src_format", choices=formats, required=True)
    q.add_argument("--to", dest="dst_format", choices=formats, default="jsonl")
    q.add_argument("--split", default=None, help="split, for hub data sets")
    _add_common(q)
    q = data.add_parser("stats", help="items, steps, label balance, step lengths, too-coarse and "
                        "too-fine steps; candidate-pool statistics when questions repeat",
                        formatter_class=_HelpFormatter)
    q.add_argument("source")
    q.add_argument("--format", choices=formats, default="jsonl")
    q.add_argument("--split", default=None)
    _add_common(q)
    q = data.add_parser("overlap", help="questions of A that also appear in B (after "
                        "normalisation): check evaluation data against training data",
                        formatter_class=_HelpFormatter)
    q.add_argument("a")
    q.add_argument("b")
    q.add_argument("--format-a", choices=formats, default="jsonl")
    q.add_argument("--format-b", choices=formats, default="jsonl")
    q.add_argument("--show", type=int, default=10, help="list at most this many questions")
    _add_common(q)
    q = data.add_parser("synthetic", help="write pools of the built-in synthetic world as JSONL",
                        formatter_class=_HelpFormatter)
    q.add_argument("--out", required=True)
    q.add_argument("--problems", type=int, default=300)
    q.add_argument("--pool", type=int, default=64, help="candidates per problem")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--label-policy", choices=("first_error", "value"), default="first_error",
                   help="first_error: unlabelled after the first wrong step (PRM800K); value: "
                        "every later step labelled wrong")
    _add_common(q)

    p = sub.add_parser("demo", help="the whole loop on the built-in synthetic world: PRMs on "
                       "SmolLM2 reading steps in context and on MiniLM reading them alone, an ORM "
                       "and content-free heads; best-of-N with intervals, what each PRM catches",
                       formatter_class=_HelpFormatter)
    p.add_argument("--out", default="runs/demo", help="folder for report.md, results.json, "
                   "bestofn.png and the trained heads")
    p.add_argument("--quick", action="store_true",
                   help="the 3-minute demo: MiniLM only, each step embedded on its own, 300 "
                        "held-out pools of 64")
    full, quick = DemoConfig(), DemoConfig.quick()
    sizes = "(default: {} full, {} with --quick)"
    p.add_argument("--train-problems", type=int, default=None,
                   help="training problems " + sizes.format(full.train_problems,
                                                            quick.train_problems))
    p.add_argument("--train-pool", type=int, default=None,
                   help="candidates per training problem " + sizes.format(full.train_pool,
                                                                          quick.train_pool))
    p.add_argument("--test-problems", type=int, default=None,
                   help="held-out problems " + sizes.format(full.test_problems,
                                                            quick.test_problems))
    p.add_argument("--test-pool", type=int, default=None,
                   help="candidates per held-out problem (M; accuracy at N averages N-subsets) "
                        + sizes.format(full.test_pool, quick.test_pool))
    p.add_argument("--ns", type=int, nargs="+", default=list(full.ns), help="values of N")
    p.add_argument("--seed", type=int, default=full.seed)
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder")
    _add_common(p)
    return parser


def cmd_train(args) -> dict:
    from prmkit.workflows import train_prm

    config = _config(TrainConfig, target=args.target, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, weight_decay=args.weight_decay, val_fraction=args.val_fraction,
                         patience=args.patience, seed=args.seed, num_threads=args.threads,
                         checkpoint_every=args.checkpoint_every)
    head = {"hidden_size": args.hidden_size, "num_layers": args.num_layers,
            "num_heads": args.num_heads, "dropout": args.dropout, "max_steps": args.max_steps,
            "causal": not args.bidirectional}
    summary = train_prm(args.data, args.out, _embed_config(args), head, config, _cache_dir(args),
                        progress=not args.no_progress, overwrite=args.overwrite)
    if not args.json:
        print(describe(summary["embedding"]))
        if summary["resumed_from"]:
            r = summary["resumed_from"]
            print(f"resumed from the checkpoint at epoch {r['epoch'] + 1}, batch {r['batch']}")
        line = (f"trained {summary['target']} head: {summary['epochs_run']} epochs, best epoch "
                f"{summary['best_epoch']}, train loss {summary['train_loss']:.4f}")
        if summary.get("val_loss") is not None:
            auroc = summary.get("val_step_auroc")
            line += (f", val loss {summary['val_loss']:.4f}, val step AUROC "
                     f"{'n/a' if auroc is None else f'{auroc:.3f}'}")
        print(line)
        print(f"saved to {summary['out']}")
    return summary


def cmd_score(args) -> dict:
    from prmkit.workflows import score_data

    rows, report = score_data(args.model, args.data, args.out, _cache_dir(args),
                              args.batch_size, progress=not args.no_progress)
    if args.json and not args.out:
        for row in rows:
            print(json.dumps(row))
        return {}
    if not args.json:
        print(describe(report), file=sys.stderr)
        if args.out:
            print(f"wrote {len(rows)} scored trajectories to {args.out}")
        else:
            for row in rows:
                scores = " ".join(f"{name}={value:.4g}" for name, value in row["scores"].items())
                steps = " ".join(f"{p:.3f}" for p in row["step_probs"])
                print(f"#{row['index']}  {scores}  steps: {steps}")
    return {"scored": len(rows), "out": args.out, "embedding": report}


def cmd_embed(args) -> dict:
    from prmkit.workflows import compare_layers, embed_data

    if args.shard_size < 1:
        raise PrmkitError("--shard-size must be positive")
    config = _embed_config(args)
    if args.layers:
        rows = compare_layers(args.data, config, args.layers, _cache_dir(args),
                              progress=not args.no_progress)
        if not args.json:
            print(f"{'layer':>16} {'val step AUROC':>15} {'(std, 5 seeds)':>15} {'val loss':>9}")
            for r in rows:
                print(f"{r['layer']:>16} {r['val_step_auroc']:>15.3f} "
                      f"{r['val_step_auroc_std']:>15.3f} {r['val_loss']:>9.4f}")
        return {"layers": rows}
    _, _, report = embed_data(args.data, config, _cache_dir(args), progress=not args.no_progress,
                              shard_trajectories=args.shard_size)
    if not args.json:
        print(describe(report))
    return report


def cmd_data(args) -> dict:
    from prmkit.data import formats

    if args.data_command == "convert":
        summary = formats.convert(args.src_format, args.source, args.dst_format, args.dest,
                                  split=args.split)
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
    from prmkit.data import synthetic
    from prmkit.records import write_jsonl

    config = _config(synthetic.WorldConfig, label_policy=args.label_policy)
    world = synthetic.make_world(args.problems, args.pool, args.seed, config)
    n = write_jsonl(args.out, [t for p in world for t in p.trajectories])
    if not args.json:
        print(f"wrote {n} trajectories ({args.problems} problems x {args.pool}) to {args.out}")
    return {"trajectories": n, "out": args.out}


def _print_stats(result: dict) -> None:
    from prmkit.data.synthetic import format_comparison

    print(f"items {result['items']}, steps {result['steps']}")
    for key in ("steps_per_item", "step_chars", "step_words"):
        d = result[key]
        print(f"  {key:<15} mean {d['mean']:.1f}  median {d['median']:.1f}  p90 {d['p90']:.1f}")
    print(f"  labels          {result['labels']}")
    print(f"  label kinds     {result['label_kinds']}")
    print(f"  outcomes        {result['outcomes']}")
    print(f"  coarse steps    {result['coarse_steps']} (several claims in one step)")
    print(f"  fine steps      {result['fine_steps']} (a few words)")
    if "pools" in result:
        pools = dict(result["pools"])
        print(f"candidate pools: {pools.pop('count')} questions with several solutions")
        for line in format_comparison(pools):
            print("  " + line)


def cmd_demo(args) -> dict:
    from prmkit.demo import run_demo

    sizes = {name: value for name, value in (
        ("train_problems", args.train_problems), ("train_pool", args.train_pool),
        ("test_problems", args.test_problems), ("test_pool", args.test_pool))
        if value is not None}
    try:
        make = DemoConfig.quick if args.quick else DemoConfig
        config = make(**sizes, ns=tuple(args.ns), seed=args.seed)
    except ValueError as e:
        raise PrmkitError(str(e)) from None
    results = run_demo(args.out, config, args.cache, progress=not args.no_progress)
    if not args.json:
        print(results.pop("report"))
        return {}
    results.pop("report")
    return results


COMMANDS = {"train": cmd_train, "score": cmd_score, "embed": cmd_embed, "data": cmd_data,
            "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = COMMANDS[args.command](args)
    except PrmkitError as e:
        print(f"prmkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json and result:
        print(json.dumps(jsonable(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

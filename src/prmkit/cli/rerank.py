"""``prmkit rerank``: best-of-N over the user's own candidates, picked by several rules."""

from __future__ import annotations

from prmkit.cli.common import (SCORER_HELP, add_common, add_device, add_format, cache_dir,
                               command, device, stage_config)
from prmkit.embed import describe
from prmkit.rerank import RANKING, RerankConfig

EXAMPLES = """examples:
  prmkit rerank candidates.jsonl --scorer runs/quick --out picks.jsonl
  prmkit rerank samples.jsonl --scorer runs/m --aggregation product --n 1 4 16 --out picks.jsonl
  prmkit data synthetic --out world.jsonl --problems 50 --pool 8
  prmkit rerank world.jsonl --scorer runs/quick --out picks.jsonl   # gold known: accuracy too"""
RERANK_DESCRIPTION = """\
Best-of-N over your own generations. Candidates are grouped by question and all scored in one
pass (a question and the step prefixes its candidates share are encoded once). Per question,
OUT gets the pick of each rule:
  PRM (AGG)                    the highest aggregated score (--aggregation)
  PRM-weighted majority (AGG)  the answer with the largest sum of scores
  majority vote                the most frequent answer
  random, longest, shortest    baselines (length in characters)
Answers that math-verify judges equal (0.5 and 1/2) are one vote. Ties are broken at random
with --seed. Where records carry gold (outcome, or meta.reference_answer), accuracy at N of each
rule and of the oracle (pass@N) is printed, averaged over N-subsets of each question's
candidates, with 95% intervals over questions."""


def add_parser(sub) -> None:
    r = RerankConfig()
    p = command(sub, "rerank", "best-of-N over your own candidate solutions: score each with a "
                "PRM, pick one per question by several rules; accuracy when gold is known",
                RERANK_DESCRIPTION, epilog=EXAMPLES)
    p.add_argument("data", help="candidate solutions, one record each (several per question; "
                   "answer from the record's answer field, else the last step)")
    add_format(p)
    p.add_argument("--scorer", required=True, metavar="NAME_OR_PATH", help=SCORER_HELP)
    p.add_argument("--out", required=True, help="one JSON line per question: its candidates' "
                   "record indices, answers, scores and each rule's pick")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--aggregation", choices=RANKING, default=r.aggregation,
                   help="step scores to one score per solution (min: the weakest step)")
    p.add_argument("--seed", type=int, default=r.seed,
                   help="seed of tie-breaking, of the N-subsets and of the bootstrap")
    p.add_argument("--n", type=int, nargs="+", default=None,
                   help="N values for accuracy (default: powers of two up to the smallest pool)")
    p.add_argument("--batch-size", type=int, default=64, help="trajectories per head batch")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    add_device(p)
    add_common(p)


def cmd_rerank(args) -> dict:
    from prmkit.rerank import rerank_file

    config = stage_config(RerankConfig, aggregation=args.aggregation, seed=args.seed,
                          ns=tuple(args.n) if args.n else None)
    summary = rerank_file(args.data, args.scorer, args.out, config, args.format,
                          cache_dir(args), args.batch_size, overwrite=args.overwrite,
                          progress=not args.no_progress, device=device(args))
    if not args.json:
        single = summary["single_candidate"]
        print(f"reranked {summary['candidates']} candidates of {summary['questions']} questions"
              + (f" ({single} with a single candidate)" if single else "")
              + f", aggregation {summary['aggregation']}; wrote {summary['out']}")
        e = summary["embedding"]
        if e is not None and e["forward_batches"]:
            print(f"{describe(e)}; {e['real_tokens']} tokens through the model for "
                  f"{e['input_tokens']} tokens of candidates, {e['shared_rows']} shared rows "
                  "run once")
        elif e is not None:
            print(describe(e))
        a = summary["accuracy"]
        if a is None:
            print("accuracy not measured: it needs questions with at least two candidates "
                  "whose gold is known (outcome, or meta.reference_answer)")
        else:
            left = f"; {a['left_out']} left out (one candidate, or gold unknown)" \
                if a["left_out"] else ""
            print(f"\naccuracy at N (%, 95% intervals over {a['questions']} questions{left}):")
            print(a["table"])
    return summary

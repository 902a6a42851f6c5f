"""``prmkit search``: beam search, DVTS or best-of-N guided by a PRM, or ``--compare`` them."""

from __future__ import annotations

from prmkit._io import atomic_open, check_output, write_json
from prmkit.cli.common import (SCORER_HELP, add_common, add_device, command, device,
                               stage_config)
from prmkit.errors import PrmkitError
from prmkit.rerank import RANKING
from prmkit.search import METHODS, SearchConfig
from prmkit.search_jobs import CompareConfig

EXAMPLES = """examples:
  prmkit data synthetic --problems 20 --pool 1 --seed 7 --out questions.jsonl
  prmkit search questions.jsonl --scorer runs/demo/models/smollm2-in-context--both --out beams.jsonl
  prmkit search questions.jsonl --scorer runs/m --method dvts --n 16 --width 4 --out dvts.jsonl
  prmkit search mine.jsonl --scorer runs/m --generator hf --model smollm2 --out beams.jsonl
  prmkit search --compare --scorer runs/m --out runs/search   # every method, one budget"""
SEARCH_DESCRIPTION = """\
Steer generation with a PRM, a step at a time. Beam search keeps --width beams; each is
continued by --expansions sampled steps, equal steps from one beam are kept once, and each
candidate scores score(beam) + log p(step) + lam * log PRM(step) (log p where the generator
reports it: hf always, http with logprobs). Open beams are refilled to --width until --width
solutions have finished; finished solutions of different lengths are compared by score per
step. DVTS runs n / width independent subtrees, greedy within each. best_of_n samples n whole
solutions and keeps the PRM's pick (--aggregation). A prmkit PRM on a causal backbone keeps
each beam's key/value states: a new step costs only its own tokens. Budgets are generated
tokens (the PRM's tokenizer counts them where the generator does not)."""


def add_parser(sub) -> None:
    s = SearchConfig()
    p = command(sub, "search", "step-level beam search, DVTS or best-of-N guided by a PRM, "
                "with any generator; --compare: all of them at one budget on the demo world",
                SEARCH_DESCRIPTION, epilog=EXAMPLES)
    p.add_argument("data", nargs="?", default=None, help="questions, one JSON object a line "
                   "with a \"question\" (prmkit records work; the world's solver needs its "
                   "records' meta.problem_id)")
    p.add_argument("--scorer", required=True, metavar="NAME_OR_PATH", help=SCORER_HELP)
    p.add_argument("--method", choices=METHODS, default="beam", help="beam: step-level beam "
                   "search; dvts: n/width greedy subtrees; best_of_n: n whole samples, the "
                   "PRM's pick")
    p.add_argument("--out", default=None, help="one JSON line per question (with --compare: a "
                   "folder for results.json and report.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    g = p.add_argument_group("search")
    g.add_argument("--width", type=int, default=s.width, help="beams kept (B)")
    g.add_argument("--expansions", type=int, default=s.expansions,
                   help="next steps sampled per beam and depth (E)")
    g.add_argument("--n", type=int, default=s.n, help="best-of-N samples; DVTS budget "
                   "(n / width subtrees)")
    g.add_argument("--max-depth", type=int, default=s.max_depth, help="steps at most")
    g.add_argument("--lam", type=float, default=s.lam, help="weight of log PRM beside the "
                   "generator's log p (0: likelihood beam search)")
    g.add_argument("--aggregation", choices=RANKING, default=s.aggregation,
                   help="best-of-N: step scores to one score per solution")
    g.add_argument("--no-prune", action="store_true",
                   help="keep equal steps sampled from one beam")
    g.add_argument("--seed", type=int, default=s.seed, help="seed of the generator")
    g = p.add_argument_group("generator")
    g.add_argument("--generator", choices=("solver", "hf", "http"), default="solver",
                   help="solver: the demo world's noisy solver (offline, for its questions); "
                        "hf: a causal LM (--model); http: an OpenAI-compatible endpoint "
                        "(--url, --model)")
    g.add_argument("--model", default=None, help="hf: short name, folder or hub id "
                   "(default smollm2); http: the served model's name")
    g.add_argument("--url", default=None, help="http: the endpoint up to /v1")
    g = p.add_argument_group("comparison on the demo world")
    g.add_argument("--compare", action="store_true", help="beam search, DVTS, best-of-N, "
                   "PRM-weighted majority and majority vote on held-out world problems at one "
                   "budget, with intervals (no DATA)")
    g.add_argument("--problems", type=int, default=CompareConfig().problems,
                   help="held-out world problems for --compare")
    add_device(p)
    add_common(p)


def cmd_search(args) -> dict:
    from prmkit.scoring import load_scorer
    from prmkit.search_jobs import compare_searches, render, search_file
    from prmkit.workflows import baseline_scorers

    config = stage_config(SearchConfig, width=args.width, expansions=args.expansions, n=args.n,
                          max_depth=args.max_depth, lam=args.lam, aggregation=args.aggregation,
                          prune_duplicates=not args.no_prune, seed=args.seed)
    if args.compare:
        if args.data is not None or args.generator != "solver":
            raise PrmkitError("--compare runs on the demo world with its solver: give no DATA "
                              "and no --generator")
        out = check_output(args.out, folder=True) if args.out else None
        compare = stage_config(CompareConfig, problems=args.problems, search=config)
        results = compare_searches(load_scorer(args.scorer, device=device(args)), compare,
                                   progress=not args.no_progress,
                                   baselines=baseline_scorers(args.scorer))
        text = "\n".join(render(results)) + "\n"
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "results.json", results)
            with atomic_open(out / "report.md") as f:
                f.write(text)
        if not args.json:
            print(text)
        return results
    if args.data is None or args.out is None:
        raise PrmkitError("give DATA (questions) and --out, or --compare")
    summary = search_file(args.data, args.scorer, args.out, args.method, config, args.generator,
                          args.model, args.url, args.overwrite, progress=not args.no_progress,
                          device=device(args))
    if not args.json:
        print(f"{args.method}: {summary['answered']} of {summary['questions']} questions "
              f"answered, {summary['generated_tokens_per_question']:.0f} generated tokens a "
              f"question, {summary['seconds']} s; wrote {summary['out']}")
    return summary

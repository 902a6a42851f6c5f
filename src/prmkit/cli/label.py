"""``prmkit label``: step labels from a cheap source; ``--compare`` against the truth."""

from __future__ import annotations

from prmkit._io import atomic_open, check_output, write_json
from prmkit.cli.common import add_common, add_device, add_format, command, device
from prmkit.errors import PrmkitError

EXAMPLES = """examples:
  prmkit data synthetic --problems 50 --pool 4 --out world.jsonl
  prmkit label world.jsonl --strategy arithmetic --out arith.jsonl
  prmkit label world.jsonl --strategy montecarlo --k 8 --search binary --out mc.jsonl
  prmkit label --compare --out runs/labels     # every source against the truth (~10 min)
  prmkit label mine.jsonl --strategy montecarlo --generator http \\
      --url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-Math-1.5B-Instruct --out mc.jsonl"""


def add_parser(sub) -> None:
    p = command(sub, "label", "label steps from a cheap source: the final outcome, an "
                "arithmetic checker, Monte-Carlo rollouts or a judge model (resumable)",
                epilog=EXAMPLES)
    p.add_argument("data", nargs="?", help="trajectories to label (their labels are replaced)")
    add_format(p)
    p.add_argument("--out", required=True, help="labelled JSONL (written as OUT.partial, "
                   "renamed when done; a rerun resumes from it); with --compare, a folder")
    p.add_argument("--compare", action="store_true",
                   help="on the demo world, where true labels are known: each source's F1 on "
                        "bad steps and rollouts, Monte-Carlo by k, and a PRM trained on each "
                        "source, best-of-N (about 10 minutes)")
    p.add_argument("--strategy", choices=("outcome", "arithmetic", "montecarlo", "judge"),
                   help="outcome: every step gets the final answer's "
                   "correctness; arithmetic: false arithmetic is the first error; montecarlo: "
                   "completions from each prefix; judge: a model asked about each step")
    g = p.add_argument_group("Monte-Carlo and judge")
    g.add_argument("--k", type=int, default=8, help="completions per prefix")
    g.add_argument("--estimate", choices=("hard", "soft"), default="hard",
                   help="hard: good if any completion is right; soft: the share (a float label)")
    g.add_argument("--search", choices=("linear", "binary"), default="linear",
                   help="binary: find the first bad step with rollouts at ~log2(T) prefixes")
    g.add_argument("--generator", choices=("solver", "hf", "http"), default="solver",
                   help="solver: the demo world's noisy solver (offline, for its records); hf: a "
                        "causal LM (--model); http: an OpenAI-compatible endpoint (--url, --model)")
    g.add_argument("--model", default=None, help="hf: short name, folder or hub id "
                   "(default smollm2); http: the served model's name")
    g.add_argument("--url", default=None, help="http: the endpoint up to /v1 "
                   "(OPENAI_API_KEY is sent when set)")
    g.add_argument("--seed", type=int, default=0, help="seed of the rollouts")
    p.add_argument("--template", default=None, help="judge: a prompt template file with "
                   "{question}, {previous}, {step}, {number} (default: the bundled one)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_device(p)
    add_common(p)


def cmd_label(args) -> dict:
    from prmkit.label.montecarlo import MonteCarlo
    from prmkit.workflows import label_data

    if args.compare:
        return _label_compare(args)
    if args.data is None or args.strategy is None:
        raise PrmkitError("give the data to label and --strategy (or --compare)")
    check_output(args.out, [args.data], overwrite=args.overwrite)
    try:
        montecarlo = MonteCarlo(k=args.k, estimate=args.estimate, search=args.search,
                                seed=args.seed)
    except ValueError as e:
        raise PrmkitError(str(e)) from None
    summary = label_data(args.data, args.out, args.strategy, args.format, args.generator,
                         args.model, args.url, montecarlo, args.template,
                         progress=not args.no_progress, device=device(args))
    if not args.json:
        resumed = f", {summary['resumed']} kept from an earlier run" if summary["resumed"] else ""
        print(f"labelled {summary['records']} records ({args.strategy}{resumed}; "
              f"{summary['rollouts']} rollouts) into {args.out}")
    return summary


def _label_compare(args) -> dict:
    from prmkit.label.compare import CompareConfig, markdown, run_compare

    out = check_output(args.out, folder=True)
    for name in ("compare.md", "results.json"):
        check_output(out / name, overwrite=args.overwrite)
    results = run_compare(CompareConfig(k=args.k, seed=args.seed), progress=not args.no_progress,
                          device=device(args))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    text = "\n".join(markdown(results)) + "\n"
    with atomic_open(out / "compare.md") as f:
        f.write(text)
    if not args.json:
        print(text)
        return {}
    return results

"""``prmkit demo``: the whole loop on the synthetic world, or best-of-N on CHAMP."""

from __future__ import annotations

from dataclasses import replace

from prmkit.cli.common import add_common, add_device, command, device
from prmkit.demo import DemoConfig
from prmkit.embed.backbone import FEATURES
from prmkit.errors import PrmkitError

EXAMPLES = """examples:
  prmkit demo                 # about 10 minutes cold on 2 cores
  prmkit demo --quick         # about 2 minutes
  prmkit demo --features both # SmolLM2's hidden states and surprise, every feature set compared
                              #   (11 to 21 minutes cold on 2 cores, by CPU)
  prmkit demo --data champ    # best-of-N on CHAMP's real model solutions (about 60 minutes cold)"""


def add_parser(sub) -> None:
    p = command(sub, "demo", "the whole loop on the built-in synthetic world: PRMs on SmolLM2 "
                "reading steps in context and on MiniLM reading them alone, an ORM and "
                "content-free heads; best-of-N with intervals, what each PRM catches",
                epilog=EXAMPLES)
    p.add_argument("--data", choices=("world", "champ"), default="world",
                   help="world: the synthetic world (default); champ: CHAMP's real model "
                        "solutions, PRM trained on the annotated solutions of other problems, "
                        "beside an ORM and majority vote (about 60 minutes cold)")
    p.add_argument("--out", default=None, help="folder for report.md, results.json, "
                   "bestofn.png and the trained heads (default: runs/demo, runs/demo-champ)")
    p.add_argument("--quick", action="store_true",
                   help="the 2-minute demo: MiniLM only, each step embedded on its own, 300 "
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
    p.add_argument("--seed", type=int, default=full.seed, help="seed of the world")
    p.add_argument("--features", choices=FEATURES, default=None,
                   help="what SmolLM2 gives the PRM: its hidden states (the pass stops at the "
                        "layer read), its surprise (the whole pass and the LM head), or both, "
                        "every feature set then compared (about 2.5x slower than hidden) "
                        f"(default: {full.features})")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder")
    add_device(p)
    add_common(p)


def cmd_demo(args) -> dict:
    from prmkit.demo import run_demo

    if args.data == "champ":
        return _champ_demo(args)
    args.out = args.out or "runs/demo"
    sizes = {name: value for name, value in (
        ("train_problems", args.train_problems), ("train_pool", args.train_pool),
        ("test_problems", args.test_problems), ("test_pool", args.test_pool))
        if value is not None}
    try:
        if args.quick and args.features is not None:
            raise ValueError("--features is for SmolLM2, which --quick does not run")
        make = DemoConfig.quick if args.quick else DemoConfig
        if args.features is not None:
            # the demo's own context backbone, read for other features
            sizes.update(features=args.features,
                         context=replace(DemoConfig().context, features=args.features))
        config = make(**sizes, ns=tuple(args.ns), seed=args.seed)
    except ValueError as e:
        raise PrmkitError(str(e)) from None
    results = run_demo(args.out, config, args.cache, progress=not args.no_progress,
                       device=device(args))
    if not args.json:
        print(results.pop("report"))
        return {}
    results.pop("report")
    return results


def _champ_demo(args) -> dict:
    from prmkit.champ_bestofn import ChampConfig, run_champ

    world_only = [name for name in ("quick", "train_problems", "train_pool", "test_problems",
                                    "test_pool") if getattr(args, name) not in (None, False)]
    if world_only:
        raise PrmkitError(f"--{world_only[0].replace('_', '-')} is for the synthetic world, "
                          "not --data champ")
    try:
        config = ChampConfig(ns=tuple(args.ns), seeds=(args.seed,))
    except ValueError as e:
        raise PrmkitError(str(e)) from None
    results = run_champ(args.out or "runs/demo-champ", config, args.cache,
                        progress=not args.no_progress, device=device(args))
    report = results.pop("report")
    if not args.json:
        print(report)
        return {}
    return results

"""The ``prmkit`` command: a thin layer over ``prmkit.workflows``.

Every command takes ``--json``: machine-readable output on stdout, one JSON object per line (a
record stream such as ``score`` writes one line per record; a summary is one line). Bad input
ends with a message naming file, line and field on stderr and exit code 2, never a traceback.
Messages go through ``logging`` (``-q`` for errors only, ``-v`` for more).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
import logging
import signal
import sys
import threading

from prmkit import __version__
from prmkit.embed import EmbedConfig, describe
from prmkit.embed.backbone import DTYPES, FEATURES, POOLINGS
from prmkit.embed.sources import DEFAULT_BACKBONE
from prmkit.errors import PrmkitError
from prmkit._io import atomic_open, check_output, jsonable, write_json
from prmkit.ablate import AblateConfig
from prmkit.demo import DemoConfig
from prmkit.rerank import RANKING, RerankConfig
from prmkit.search import METHODS, SearchConfig
from prmkit.search_jobs import CompareConfig
from prmkit.train import TrainConfig


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Shows each default once, only where there is one to show: a None or False default is
    described in the option's own help (or means "off"), and a help text that names its default
    is left as it is. Descriptions and example epilogs keep their line breaks."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


FORMATS = ["jsonl", "prm800k", "math-shepherd", "trl", "processbench", "champ"]
EXAMPLES = {
    "train": """examples:
  prmkit train examples/quickstart.jsonl --out runs/quick
  prmkit train prm800k/phase2_train.jsonl --format prm800k --out runs/prm800k --epochs 20
  prmkit train data.jsonl --out runs/minilm --backbone minilm --context none""",
    "score": """examples:
  prmkit score runs/quick examples/quickstart.jsonl
  prmkit score runs/quick candidates.jsonl --out scores.jsonl --json""",
    "rerank": """examples:
  prmkit rerank candidates.jsonl --scorer runs/quick --out picks.jsonl
  prmkit rerank samples.jsonl --scorer runs/m --aggregation product --n 1 4 16 --out picks.jsonl
  prmkit data synthetic --out world.jsonl --problems 50 --pool 8
  prmkit rerank world.jsonl --scorer runs/quick --out picks.jsonl   # gold known: accuracy too""",
    "search": """examples:
  prmkit data synthetic --problems 20 --pool 1 --seed 7 --out questions.jsonl
  prmkit search questions.jsonl --scorer runs/demo/models/prm-smollm2-both --out beams.jsonl
  prmkit search questions.jsonl --scorer runs/m --method dvts --n 16 --width 4 --out dvts.jsonl
  prmkit search mine.jsonl --scorer runs/m --generator hf --model smollm2 --out beams.jsonl
  prmkit search --compare --scorer runs/m --out runs/search   # every method, one budget""",
    "eval": """examples:
  prmkit eval runs/m processbench/ --format processbench --out runs/m-eval
  prmkit eval runs/m test.jsonl --threshold-from dev.jsonl""",
    "embed": """examples:
  prmkit embed data.jsonl                        # fill the cache, resumable
  prmkit embed data.jsonl --layers 8 15 22 -1    # which layer serves a PRM best""",
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
    "verify": """examples:
  prmkit cache verify
  prmkit cache verify --cache /data/prmkit-cache --json""",
    "gc": """examples:
  prmkit cache gc""",
    "ablate": """examples:
  prmkit ablate                                  # the demo world, 5 seeds (~15 min)
  prmkit ablate --train train.jsonl --test test.jsonl --seeds 3
  prmkit ablate --variants "focal loss (gamma 2)" "linear head" --seeds 3""",
    "label": """examples:
  prmkit data synthetic --problems 50 --pool 4 --out world.jsonl
  prmkit label world.jsonl --strategy arithmetic --out arith.jsonl
  prmkit label world.jsonl --strategy montecarlo --k 8 --search binary --out mc.jsonl
  prmkit label --compare --out runs/labels     # every source against the truth (~10 min)
  prmkit label mine.jsonl --strategy montecarlo --generator http \\
      --url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-Math-1.5B-Instruct --out mc.jsonl""",
    "demo": """examples:
  prmkit demo                 # about 11 minutes cold on 2 cores
  prmkit demo --quick         # about 2 minutes
  prmkit demo --data champ    # best-of-N on CHAMP's real model solutions (about 60 minutes cold)""",
}
SEARCH_DESCRIPTION = """\
Steer generation with a PRM, a step at a time. Beam search keeps --width beams; each is
continued by --expansions sampled steps, equal steps from one beam are kept once, and each
candidate scores score(beam) + log p(step) + lam * log PRM(step) (log p where the generator
reports it: hf always, http with logprobs). Finished solutions of different lengths are compared
by score per step. DVTS runs n / width independent subtrees, greedy within each. best_of_n
samples n whole solutions and keeps the PRM's pick (--aggregation). A prmkit PRM on a causal
backbone keeps each beam's key/value states: a new step costs only its own tokens. Budgets are
generated tokens (the PRM's tokenizer counts them where the generator does not)."""
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


def _command(sub, name: str, help: str, description: str | None = None):
    return sub.add_parser(name, help=help, description=description or help,
                          epilog=EXAMPLES.get(name), formatter_class=_HelpFormatter)


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
    p.add_argument("--json", action="store_true",
                   help="print machine-readable JSON on stdout (one object per line)")
    p.add_argument("--no-progress", action="store_true",
                   help="hide progress bars (prmkit's and those of transformers and the hub)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument("-v", "--verbose", action="store_true", help="print debugging messages")


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="jsonl",
                   help="format of the data (see README, \"Data\")")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prmkit", description="Process Reward Models: train on step-labelled data, score "
        "solutions step by step.", formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"prmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "train", "embed labelled trajectories and train a PRM head")
    p.add_argument("data", help="labelled trajectories (see README: the record format)")
    _add_format(p)
    p.add_argument("--out", required=True, help="folder for the model and its summary")
    p.add_argument("--target", choices=("step", "outcome"), default="step",
                   help="step: a PRM on step labels; outcome: an ORM on final-answer correctness")
    d = TrainConfig()
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=d.epochs, help="most epochs to train")
    t.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="trajectories per batch")
    t.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="AdamW weight decay")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of questions held out for validation and early stopping")
    t.add_argument("--patience", type=int, default=d.patience,
                   help="epochs without a better validation loss before stopping")
    t.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the split, the initialisation and the batch order")
    t.add_argument("--threads", type=int, default=d.num_threads,
                   help="torch threads, pinned for reproducible results")
    t.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="batches between checkpoints (0: each epoch)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a trained model or a checkpoint of a different run in --out")
    t.add_argument("--keep-checkpoint", action="store_true",
                   help="keep checkpoint.pt (optimizer state, weight copies) after a finished run")
    t.add_argument("--no-calibrate", action="store_true",
                   help="skip fitting a temperature and a first-error threshold on the "
                        "validation split")
    t.add_argument("--baselines", action="store_true",
                   help="also train the same head on content-free features (step lengths, "
                        "noise), saved beside the model for `prmkit eval`")
    k = p.add_argument_group("training tricks (all off by default; README, \"Training tricks\")")
    k.add_argument("--label-smoothing", type=float, default=d.label_smoothing, metavar="EPS",
                   help="labels become y (1 - 2 EPS) + EPS")
    k.add_argument("--focal-gamma", type=float, default=d.focal_gamma, metavar="GAMMA",
                   help="focal loss |y - p|^GAMMA * BCE (0: plain BCE)")
    k.add_argument("--balance", action="store_true",
                   help="right and wrong steps weigh the same in the loss")
    k.add_argument("--length-balance", action="store_true",
                   help="right and wrong steps weigh the same within each step-length bin")
    k.add_argument("--prefix-augment", action="store_true",
                   help="train on random prefixes (little effect on the default causal head)")
    k.add_argument("--curriculum", action="store_true",
                   help="short solutions first, rising to all by the middle epoch")
    k.add_argument("--outcome-weight", type=float, default=d.outcome_weight, metavar="ALPHA",
                   help="multi-task: an outcome head at the last step, loss weight ALPHA")
    k.add_argument("--next-step-weight", type=float, default=d.next_step_weight, metavar="BETA",
                   help="multi-task: next-step prediction, loss weight BETA")
    k.add_argument("--hard-negative-rounds", type=int, default=d.hard_negative_rounds,
                   help="extra rounds with confident mistakes weighted x2")
    k.add_argument("--ensemble", type=int, default=d.ensemble, metavar="K",
                   help="K heads with different seeds, saved as one model: their mean "
                        "probability, their spread as uncertainty (score shows it)")
    h = p.add_argument_group("head (defaults: the reference spec)")
    h.add_argument("--head", choices=("transformer", "linear"), default="transformer",
                   help="transformer: the spec's head; linear: per-step logistic regression on "
                        "the same features (a baseline head)")
    h.add_argument("--hidden-size", type=int, default=512, help="width of the step transformer")
    h.add_argument("--num-layers", type=int, default=4, help="transformer layers over steps")
    h.add_argument("--num-heads", type=int, default=8, help="attention heads")
    h.add_argument("--dropout", type=float, default=0.1, help="dropout in the head")
    h.add_argument("--max-steps", type=int, default=512,
                   help="longest solution the head takes, in steps")
    h.add_argument("--bidirectional", action="store_true",
                   help="let steps attend to later steps (the spec's option; default is causal)")
    _add_embed_args(p)
    _add_common(p)

    p = _command(sub, "score", "score trajectories with a trained PRM: per-step probabilities "
                 "and every aggregate")
    p.add_argument("model", help="folder written by `prmkit train` (or its hub id), or a "
                   "published PRM: KIND:PATH (math-shepherd, qwen-prm, token-classification) "
                   "or a known hub id")
    p.add_argument("data", help="trajectories (labels are ignored)")
    _add_format(p)
    p.add_argument("--out", help="write one JSON line per trajectory here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--flag-errors", action="store_true",
                   help="add each solution's predicted first error (the first step whose "
                        "probability is below the model's saved threshold; -1 for none)")
    p.add_argument("--batch-size", type=int, default=64, help="trajectories per head batch")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    _add_common(p)

    r = RerankConfig()
    p = _command(sub, "rerank", "best-of-N over your own candidate solutions: score each with a "
                 "PRM, pick one per question by several rules; accuracy when gold is known",
                 RERANK_DESCRIPTION)
    p.add_argument("data", help="candidate solutions, one record each (several per question; "
                   "answer from the record's answer field, else the last step)")
    _add_format(p)
    p.add_argument("--scorer", required=True, metavar="NAME_OR_PATH",
                   help="folder written by `prmkit train` (or its hub id), or a published "
                        "PRM: KIND:PATH (math-shepherd, qwen-prm, token-classification) or a "
                        "known hub id")
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
    _add_common(p)

    s = SearchConfig()
    p = _command(sub, "search", "step-level beam search, DVTS or best-of-N guided by a PRM, "
                 "with any generator; --compare: all of them at one budget on the demo world",
                 SEARCH_DESCRIPTION)
    p.add_argument("data", nargs="?", default=None, help="questions, one JSON object a line "
                   "with a \"question\" (prmkit records work; the world's solver needs its "
                   "records' meta.problem_id)")
    p.add_argument("--scorer", required=True, metavar="NAME_OR_PATH",
                   help="folder written by `prmkit train` (or its hub id), or a published "
                        "PRM: KIND:PATH (math-shepherd, qwen-prm, token-classification) or a "
                        "known hub id")
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
    _add_common(p)

    p = _command(sub, "eval", "every metric the data support (first-error F1, step AUROC and "
                 "F1, ECE, agreement with the labels), per split, beside content-free baselines")
    p.add_argument("model", help="folder written by `prmkit train` (or its hub id), or a "
                   "published PRM: KIND:PATH (math-shepherd, qwen-prm, token-classification) "
                   "or a known hub id")
    p.add_argument("data", help="labelled trajectories: a file, or a folder of splits "
                   "(ProcessBench: one file per split)")
    _add_format(p)
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
    _add_common(p)

    p = _command(sub, "embed", "embed every step into the cache (resumable); with --layers, "
                 "compare layers for a PRM")
    p.add_argument("data", help="trajectories")
    _add_format(p)
    p.add_argument("--shard-size", type=int, default=2048,
                   help="trajectories per cache shard: an interrupted run loses at most one")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="compare these layers' hidden states: embed each (one pass, stopped at "
                        "the deepest), train a small head per layer with 5 seeds (each its own "
                        "20%% question split), report validation step AUROC")
    _add_embed_args(p)
    _add_common(p)

    p = sub.add_parser("data", help="convert, describe and generate step-labelled data",
                       description="convert, describe and generate step-labelled data",
                       formatter_class=_HelpFormatter)
    data = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = _command(data, "convert", "read one format, write another")
    q.add_argument("source", help="file, folder, or Hugging Face dataset name (needs network)")
    q.add_argument("dest", help="output file (written atomically)")
    q.add_argument("--from", dest="src_format", choices=FORMATS, required=True,
                   help="format of the source")
    q.add_argument("--to", dest="dst_format", choices=FORMATS, default="jsonl",
                   help="format to write")
    q.add_argument("--split", default=None, help="split, for hub data sets")
    q.add_argument("--overwrite", action="store_true", help="replace an existing dest file")
    _add_common(q)
    q = _command(data, "stats", "items, steps, label balance, step lengths, too-coarse and "
                 "too-fine steps; candidate-pool statistics when questions repeat")
    q.add_argument("source", help="file, folder, or Hugging Face dataset name")
    _add_format(q)
    q.add_argument("--split", default=None, help="split, for hub data sets")
    _add_common(q)
    q = _command(data, "overlap", "questions of A that also appear in B (after normalisation): "
                 "check evaluation data against training data")
    q.add_argument("a", help="the data to check (e.g. a test set)")
    q.add_argument("b", help="the data to check against (e.g. the training set)")
    q.add_argument("--format-a", choices=FORMATS, default="jsonl", help="format of A")
    q.add_argument("--format-b", choices=FORMATS, default="jsonl", help="format of B")
    q.add_argument("--show", type=int, default=10, help="list at most this many questions")
    _add_common(q)
    q = _command(data, "synthetic", "write pools of the built-in synthetic world as JSONL")
    q.add_argument("--out", required=True, help="JSONL file to write")
    q.add_argument("--problems", type=int, default=300, help="problems to generate")
    q.add_argument("--pool", type=int, default=64, help="candidates per problem")
    q.add_argument("--seed", type=int, default=0, help="seed of the world")
    q.add_argument("--label-policy", choices=("first_error", "value"), default="first_error",
                   help="first_error: unlabelled after the first wrong step (PRM800K); value: "
                        "every later step labelled wrong")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_common(q)

    p = sub.add_parser("cache", help="check or clean the embedding cache",
                       description="check or clean the embedding cache",
                       formatter_class=_HelpFormatter)
    cache = p.add_subparsers(dest="cache_command", required=True, metavar="CACHE_COMMAND")
    for name, text in (("verify", "check every entry (hashes, shapes, values) and list corrupt "
                        "entries, orphan files and stale folders; changes nothing, exit 1 when "
                        "anything is wrong"),
                       ("gc", "remove corrupt entries, orphan files (interrupted writes), folders "
                        "of older cache formats and of backbones no longer on this machine")):
        q = _command(cache, name, text)
        q.add_argument("--cache", default=None, metavar="DIR",
                       help="embedding cache folder (default: $PRMKIT_CACHE/embeddings or "
                            "~/.cache/prmkit/embeddings)")
        _add_common(q)

    p = _command(sub, "ablate", "train with each trick on and off on the same data over several "
                 "seeds; paired differences with intervals (the demo world by default)")
    p.add_argument("--train", default=None, metavar="DATA",
                   help="training data (default: the demo world, 200 problems x 8)")
    p.add_argument("--test", default=None, metavar="DATA",
                   help="held-out data, with --train (pools with answers give best-of-N)")
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="one data set split by question instead of --train/--test, e.g. "
                        "`--data v0 --format champ` (CHAMP's annotated solutions)")
    p.add_argument("--test-share", type=float, default=0.25,
                   help="with --data: share of questions held out (one problem-level split)")
    _add_format(p)
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
    _add_embed_args(p)
    _add_common(p)

    p = _command(sub, "label", "label steps from a cheap source: the final outcome, an "
                 "arithmetic checker, Monte-Carlo rollouts or a judge model (resumable)")
    p.add_argument("data", nargs="?", help="trajectories to label (their labels are replaced)")
    _add_format(p)
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
    _add_common(p)

    p = _command(sub, "demo", "the whole loop on the built-in synthetic world: PRMs on SmolLM2 "
                 "reading steps in context and on MiniLM reading them alone, an ORM and "
                 "content-free heads; best-of-N with intervals, what each PRM catches")
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
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder")
    _add_common(p)
    return parser


def tricks(args) -> dict:
    """The training tricks set on the command line, as TrainConfig fields."""
    return {"label_smoothing": args.label_smoothing, "focal_gamma": args.focal_gamma,
            "balance": args.balance, "length_balance": args.length_balance,
            "prefix_augment": args.prefix_augment, "curriculum": args.curriculum,
            "outcome_weight": args.outcome_weight, "next_step_weight": args.next_step_weight,
            "hard_negative_rounds": args.hard_negative_rounds, "ensemble": args.ensemble}


def cmd_train(args) -> dict:
    from prmkit.workflows import train_prm

    config = _config(TrainConfig, target=args.target, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, weight_decay=args.weight_decay, val_fraction=args.val_fraction,
                         patience=args.patience, seed=args.seed, num_threads=args.threads,
                         checkpoint_every=args.checkpoint_every,
                         calibrate=not args.no_calibrate, **tricks(args))
    head = {"hidden_size": args.hidden_size, "num_layers": args.num_layers,
            "num_heads": args.num_heads, "dropout": args.dropout, "max_steps": args.max_steps,
            "causal": not args.bidirectional, "head_type": args.head}
    summary = train_prm(args.data, args.out, _embed_config(args), head, config, _cache_dir(args),
                        progress=not args.no_progress, overwrite=args.overwrite,
                        keep_checkpoint=args.keep_checkpoint, format=args.format,
                        baselines=args.baselines)
    if not args.json:
        print(describe(summary["embedding"]))
        if summary.get("resumed_from"):
            r = summary["resumed_from"]
            print(f"resumed from the checkpoint at epoch {r['epoch'] + 1}, batch {r['batch']}")
        if "ensemble" in summary:
            line = (f"trained an ensemble of {summary['ensemble']} {summary['target']} heads "
                    f"(best epochs {', '.join(str(m['best_epoch']) for m in summary['members'])})"
                    f", train loss {summary['train_loss']:.4f}")
        else:
            line = (f"trained {summary['target']} head: {summary['epochs_run']} epochs, best "
                    f"epoch {summary['best_epoch']}, train loss {summary['train_loss']:.4f}")
        if summary.get("val_loss") is not None:
            auroc = summary.get("val_step_auroc")
            line += (f", val loss {summary['val_loss']:.4f}, val step AUROC "
                     f"{'n/a' if auroc is None else f'{auroc:.3f}'}")
        print(line)
        if summary.get("calibration"):
            c = summary["calibration"]
            threshold = c.get("threshold")
            how = (f"temperature 1 ({c['temperature_skipped']})" if "temperature_skipped" in c
                   else f"temperature {c['temperature']:.3g}")
            print(f"calibrated on the validation split: {how}, "
                  f"ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}; first-error threshold "
                  + ("none (no item with a known first error)" if threshold is None else
                     f"{threshold:.3g} (F1 {c['threshold_f1']:.3f})"))
        print(f"saved to {summary['out']}")
    return summary


def cmd_score(args) -> dict:
    from prmkit.workflows import score_data

    rows, report = score_data(args.model, args.data, args.out, _cache_dir(args),
                              args.batch_size, progress=not args.no_progress,
                              overwrite=args.overwrite, format=args.format,
                              flag_errors=args.flag_errors)
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


def cmd_rerank(args) -> dict:
    from prmkit.rerank import rerank_file

    config = _config(RerankConfig, aggregation=args.aggregation, seed=args.seed,
                     ns=tuple(args.n) if args.n else None)
    summary = rerank_file(args.data, args.scorer, args.out, config, args.format,
                          _cache_dir(args), args.batch_size, overwrite=args.overwrite,
                          progress=not args.no_progress)
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
            print("no gold answers (outcome or meta.reference_answer): accuracy not measured")
        else:
            left = f"; {a['left_out']} left out (one candidate, or gold unknown)" \
                if a["left_out"] else ""
            print(f"\naccuracy at N (%, 95% intervals over {a['questions']} questions{left}):")
            print(a["table"])
    return summary


def cmd_search(args) -> dict:
    from prmkit.scoring import load_scorer
    from prmkit.search_jobs import compare_searches, render, search_file

    config = _config(SearchConfig, width=args.width, expansions=args.expansions, n=args.n,
                     max_depth=args.max_depth, lam=args.lam, aggregation=args.aggregation,
                     prune_duplicates=not args.no_prune, seed=args.seed)
    if args.compare:
        if args.data is not None or args.generator != "solver":
            raise PrmkitError("--compare runs on the demo world with its solver: give no DATA "
                              "and no --generator")
        out = check_output(args.out, folder=True) if args.out else None
        compare = _config(CompareConfig, problems=args.problems, search=config)
        results = compare_searches(load_scorer(args.scorer), compare,
                                   progress=not args.no_progress)
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
                          args.model, args.url, args.overwrite, progress=not args.no_progress)
    if not args.json:
        print(f"{args.method}: {summary['answered']} of {summary['questions']} questions "
              f"answered, {summary['generated_tokens_per_question']:.0f} generated tokens a "
              f"question, {summary['seconds']} s; wrote {summary['out']}")
    return summary


def cmd_eval(args) -> dict:
    from prmkit.evaluate import markdown
    from prmkit.workflows import eval_model

    report = eval_model(args.model, args.data, args.format, args.threshold, args.threshold_from,
                        args.dev_format, args.out, _cache_dir(args),
                        progress=not args.no_progress)
    if not args.json:
        print("\n".join(markdown(report)))
        if args.out:
            print(f"wrote eval.json, eval.md and reliability.png to {args.out}")
    return report


def cmd_embed(args) -> dict:
    from prmkit.workflows import compare_layers, embed_data

    if args.shard_size < 1:
        raise PrmkitError("--shard-size must be positive")
    config = _embed_config(args)
    if args.layers:
        rows = compare_layers(args.data, config, args.layers, _cache_dir(args),
                              progress=not args.no_progress, format=args.format)
        if not args.json:
            print(f"{'layer':>16} {'val step AUROC':>15} {'(std, 5 seeds)':>15} {'val loss':>9}")
            for r in rows:
                print(f"{r['layer']:>16} {r['val_step_auroc']:>15.3f} "
                      f"{r['val_step_auroc_std']:>15.3f} {r['val_loss']:>9.4f}")
        return {"layers": rows}
    _, _, report = embed_data(args.data, config, _cache_dir(args), progress=not args.no_progress,
                              shard_trajectories=args.shard_size, format=args.format)
    if not args.json:
        print(describe(report))
    return report


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
    from prmkit.data import synthetic
    from prmkit.generate.solver import make_world
    from prmkit.records import write_jsonl

    check_output(args.out, overwrite=args.overwrite)
    config = _config(synthetic.WorldConfig, label_policy=args.label_policy)
    world = make_world(args.problems, args.pool, args.seed, config)
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


def cmd_cache(args) -> dict:
    from prmkit.embed.cache import collect_garbage, default_cache_dir, verify_cache

    root = args.cache or default_cache_dir()
    if args.cache_command == "verify":
        report = verify_cache(root)
        problems = report["corrupt"] + report["orphans"] + report["stale"]
        if not args.json:
            print(f"{report['root']}: {report['folders']} spec folders, {report['shards']} good "
                  f"shards, {report['entries']} entries, {report['steps']} steps")
            for name in ("corrupt", "orphans", "stale"):
                for line in report[name]:
                    print(f"  {name}: {line}")
            if problems:
                print(f"{len(problems)} problems; `prmkit cache gc` removes them")
        report["exit_code"] = 1 if problems else 0
        return report
    report = collect_garbage(root)
    if not args.json:
        print(f"{report['root']}: removed {report['removed_files']} files and "
              f"{report['removed_folders']} folders ({report['freed_bytes'] / 2**20:.1f} MiB); "
              f"{report['kept_entries']} entries kept")
    return report


def cmd_ablate(args) -> dict:
    from prmkit.ablate import VARIANTS, markdown
    from prmkit.workflows import ablate

    if (args.train is None) != (args.test is None):
        raise PrmkitError("give both --train and --test, or neither (the demo world)")
    if args.data is not None and args.train is not None:
        raise PrmkitError("give --data or --train/--test, not both")
    base = AblateConfig()
    config = _config(AblateConfig, seeds=tuple(range(args.seeds)), n=args.n,
                     variants=tuple(args.variants or VARIANTS), sizes=tuple(args.sizes),
                     train=_config(TrainConfig, **{**asdict(base.train), "epochs": args.epochs}),
                     embed=_embed_config(args))
    results = ablate(config, args.train, args.test, args.format, args.out, _cache_dir(args),
                     progress=not args.no_progress, overwrite=args.overwrite, data=args.data,
                     test_share=args.test_share)
    if not args.json:
        print("\n".join(markdown(results)))
        print(f"wrote ablate.md and results.json to {args.out}")
    return results


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
                        progress=not args.no_progress)
    report = results.pop("report")
    if not args.json:
        print(report)
        return {}
    return results


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
                         progress=not args.no_progress)
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
    results = run_compare(CompareConfig(k=args.k, seed=args.seed), progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    text = "\n".join(markdown(results)) + "\n"
    with atomic_open(out / "compare.md") as f:
        f.write(text)
    if not args.json:
        print(text)
        return {}
    return results


COMMANDS = {"label": cmd_label, "train": cmd_train, "score": cmd_score,
            "rerank": cmd_rerank, "search": cmd_search, "eval": cmd_eval, "embed": cmd_embed,
            "data": cmd_data, "cache": cmd_cache, "ablate": cmd_ablate, "demo": cmd_demo}


def _setup_output(args) -> None:
    """stdlib logging at the level asked for; third-party progress bars off with --no-progress."""
    level = logging.ERROR if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logger = logging.getLogger("prmkit")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("prmkit: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    if args.no_progress or args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            from huggingface_hub.utils import disable_progress_bars
            disable_progress_bars()
        except ImportError:
            pass
    if not args.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()


def _terminate(signum, frame):
    """SIGTERM ends like Ctrl-C: ``finally`` blocks run, so no temporary file is left."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_output(args)
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        result = COMMANDS[args.command](args)
    except PrmkitError as e:
        print(f"prmkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
    code = result.pop("exit_code", 0) if isinstance(result, dict) else 0
    if args.json and result:
        print(json.dumps(jsonable(result), allow_nan=False))  # one summary, one line
    return code


if __name__ == "__main__":
    sys.exit(main())

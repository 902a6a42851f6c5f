"""What the commands share: the help formatter, argument groups, and stage configs built from
arguments (a config's range check becomes a user error, exit 2)."""

from __future__ import annotations

import argparse

from prmkit.embed import EmbedConfig
from prmkit.embed.backbone import DTYPES, FEATURES, POOLINGS
from prmkit.embed.sources import DEFAULT_BACKBONE
from prmkit.errors import PrmkitError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Shows each default once, only where there is one to show: a None or False default is
    described in the option's own help (or means "off"), and a help text that names its default
    is left as it is. Descriptions and example epilogs keep their line breaks."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


FORMATS = ["jsonl", "prm800k", "math-shepherd", "trl", "processbench", "champ"]

# What --scorer (and MODEL of score and eval) takes: anything ``scoring.load_scorer`` loads.
SCORER_HELP = ("folder written by `prmkit train` (or its hub id), or a published PRM: KIND:PATH "
               "(math-shepherd, qwen-prm, token-classification) or a known hub id")


def command(sub, name: str, help: str, description: str | None = None,
            epilog: str | None = None):
    """A subcommand's parser: its description defaults to its help; the epilog shows examples."""
    return sub.add_parser(name, help=help, description=description or help, epilog=epilog,
                          formatter_class=HelpFormatter)


def add_embed_args(p: argparse.ArgumentParser) -> None:
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


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="where models run: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N "
                        "or mps; under torchrun, each process takes cuda:LOCAL_RANK")


def device(args):
    """The ``torch.device`` that ``--device`` names (an unavailable one is a user error)."""
    from prmkit.devices import resolve_device

    return resolve_device(args.device)


def stage_config(cls, **kwargs):
    """Build a stage config; its range checks become user errors (exit 2)."""
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise PrmkitError(str(e)) from None


def embed_config(args) -> EmbedConfig:
    return stage_config(EmbedConfig, backbone=args.backbone, pooling=args.pooling,
                        layer=args.layer, dtype=args.dtype, max_length=args.max_length,
                        context=args.context, features=args.features)


def cache_dir(args):
    return False if args.no_cache else args.cache


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print machine-readable JSON on stdout (one object per line)")
    p.add_argument("--no-progress", action="store_true",
                   help="hide progress bars (prmkit's and those of transformers and the hub)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument("-v", "--verbose", action="store_true", help="print debugging messages")


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="jsonl",
                   help="format of the data (see README, \"Data\")")

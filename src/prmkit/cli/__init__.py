"""The ``prmkit`` command: a thin layer over ``prmkit.workflows``, one module per command.

Every command takes ``--json``: machine-readable output on stdout, one JSON object per line (a
record stream such as ``score`` writes one line per record; a summary is one line). Bad input
ends with a message naming file, line and field on stderr and exit code 2, never a traceback.
Messages go through ``logging`` (``-q`` for errors only, ``-v`` for more).

Each command's module holds its ``add_parser(sub)`` (options, help, examples) and its
``cmd_*`` function, which calls the library; ``common.py`` holds what several commands share.

Under torchrun (``torchrun --nproc-per-node K -m prmkit embed|train ...``) every process
runs the command (``prmkit.distributed``); rank 0 alone prints results and messages below
errors, the others' stdout goes nowhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading

from prmkit import __version__, distributed
from prmkit._io import jsonable
from prmkit.cli import (ablate, cache, data, demo, embed, evaluate, export, label, rerank, score,
                        search, train)
from prmkit.cli.common import HelpFormatter
from prmkit.errors import PrmkitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prmkit", description="Process Reward Models: train on step-labelled data, score "
        "solutions step by step.", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"prmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (train, score, rerank, search, evaluate, embed, export, data, cache, ablate,
                   label, demo):
        module.add_parser(sub)
    return parser


COMMANDS = {"label": label.cmd_label, "train": train.cmd_train, "score": score.cmd_score,
            "rerank": rerank.cmd_rerank, "search": search.cmd_search, "eval": evaluate.cmd_eval,
            "embed": embed.cmd_embed, "export": export.cmd_export, "data": data.cmd_data,
            "cache": cache.cmd_cache, "ablate": ablate.cmd_ablate, "demo": demo.cmd_demo}


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
    try:
        distributed.init()  # under torchrun: join the other processes
    except PrmkitError as e:
        print(f"prmkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    speaks = distributed.is_main()
    if not speaks:  # K copies of every line would say nothing more
        args.quiet, args.no_progress = True, True
    _setup_output(args)
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        with contextlib.ExitStack() as quiet:
            if not speaks:
                quiet.enter_context(contextlib.redirect_stdout(
                    quiet.enter_context(open(os.devnull, "w"))))
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
    distributed.close()
    code = result.pop("exit_code", 0) if isinstance(result, dict) else 0
    if args.json and result and speaks:
        print(json.dumps(jsonable(result), allow_nan=False))  # one summary, one line
    return code

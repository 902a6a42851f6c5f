"""``--scorer NAME_OR_PATH``: any PRM prmkit can score with, by name or folder.

Accepted forms, tried in this order:
    - ``KIND:PATH`` (or ``kind=KIND``), KIND one of ``prmkit``, ``math-shepherd``, ``qwen-prm``,
      ``token-classification``: that loader, on a folder or a hub id;
    - a known hub id (``KNOWN_MODELS``): its wrapper;
    - a folder (or a hub id, whose config.json alone is downloaded first) holding config.json:
      ``model_type: "prmkit"`` is prmkit's own ``PRM`` (written by ``prmkit train``); otherwise
      the transformers ``architectures`` decide: ``*ProcessRewardModel`` -> qwen-prm,
      ``*ForTokenClassification`` -> token-classification, ``*ForCausalLM`` -> math-shepherd.
Published PRMs are in ``published.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prmkit.errors import PrmkitError
from prmkit.hub import _REPO_ID
from prmkit.scoring.base import Scorer

KINDS = ("prmkit", "math-shepherd", "qwen-prm", "token-classification")
KNOWN_MODELS = {"peiyi9979/math-shepherd-mistral-7b-prm": "math-shepherd",
                "Qwen/Qwen2.5-Math-PRM-7B": "qwen-prm",
                "Qwen/Qwen2.5-Math-PRM-72B": "qwen-prm"}
ARCHITECTURES = {"ProcessRewardModel": "qwen-prm", "ForTokenClassification": "token-classification",
                 "ForCausalLM": "math-shepherd"}  # suffix of a config's architecture -> kind
ACCEPTED = ("a folder saved by `prmkit train` (or its hub id); KIND:PATH with KIND one of "
            f"{', '.join(KINDS)}; a known hub id ({', '.join(KNOWN_MODELS)}); or a transformers "
            "folder whose config.json architectures end in "
            f"{', '.join(ARCHITECTURES)}")


def load_scorer(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                batch_size: int = 64, kind: str | None = None, device="cpu") -> Scorer:
    """The scorer ``name_or_path`` names (see the module docstring), its model on ``device``.
    ``cache_dir`` is the embedding cache of prmkit's own models; published PRMs read the text,
    have none and ignore it."""
    name = str(name_or_path)
    prefix, colon, rest = name.partition(":")
    if colon and prefix in KINDS:
        if kind is not None and kind != prefix:
            raise PrmkitError(f"{name} names the kind {prefix!r}, but kind={kind!r} was given")
        kind, name = prefix, rest
    if kind is None:
        kind = KNOWN_MODELS.get(name) or _infer_kind(name)
    if kind not in KINDS:
        raise PrmkitError(f"unknown scorer kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "prmkit":
        from prmkit.scoring.prm import PRM

        return PRM.from_pretrained(name, cache_dir=cache_dir, batch_size=batch_size,
                                   device=device)
    from prmkit.scoring.published import PUBLISHED

    return PUBLISHED[kind].from_pretrained(name, batch_size=batch_size, device=device)


def _infer_kind(name: str) -> str:
    """The kind of a folder or hub id, from its config.json."""
    path = Path(name).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise PrmkitError(f"{path} is not a model prmkit can score with (no config.json); "
                              f"accepted: {ACCEPTED}")
    elif not path.exists() and _REPO_ID.fullmatch(name):
        config_path = _hub_config(name)
    else:
        raise PrmkitError(f"{name} is not a model folder or a hub id; accepted: {ACCEPTED}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrmkitError(f"{config_path}: not a JSON config ({e})") from None
    if not isinstance(config, dict):
        raise PrmkitError(f"{config_path}: not a JSON object")
    if config.get("model_type") == "prmkit" or "prmkit_head" in config:  # format 2 or 1
        return "prmkit"
    architectures = config.get("architectures") or []
    for suffix, kind in ARCHITECTURES.items():
        if any(isinstance(a, str) and a.endswith(suffix) for a in architectures):
            return kind
    raise PrmkitError(f"{config_path}: architectures {architectures} name no kind of PRM "
                      f"prmkit knows; accepted: {ACCEPTED}")


def _hub_config(repo_id: str) -> Path:
    """A hub repository's config.json, downloaded alone (into the hub cache)."""
    import huggingface_hub

    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, "config.json"))
    except Exception as e:  # offline, unknown id, gated repo: all end the same way for the user
        raise PrmkitError(f"{repo_id} is not a local folder, and reading its config.json from "
                          f"the Hugging Face hub failed ({type(e).__name__}: {e})") from None

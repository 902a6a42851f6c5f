"""Models on the Hugging Face hub: a saved prmkit model folder is a hub repository as it is
(``config.json`` with ``model_type: "prmkit"``, ``model.safetensors``, ``summary.json``).

``model_folder`` turns a local folder or a hub id into a folder (the hub's own cache; works offline
once downloaded, or with ``HF_HUB_OFFLINE=1`` from that cache), and ``push_to_hub`` uploads one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prmkit.errors import PrmkitError

# What a prmkit model folder holds; nothing else is downloaded (no code, no pickles).
MODEL_FILES = ["config.json", "model.safetensors", "summary.json", "README.md"]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def model_folder(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder as it is; else a hub id (``org/name``), downloaded into the hub cache."""
    path = Path(name_or_path).expanduser()
    if path.exists() or not _REPO_ID.fullmatch(str(name_or_path)):
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), revision=revision,
                                      allow_patterns=MODEL_FILES))
    except Exception as e:  # offline, unknown id, gated repo: all end the same way for the user
        raise PrmkitError(f"{name_or_path} is not a local folder, and downloading it from the "
                          f"Hugging Face hub failed ({type(e).__name__}: {e})") from None


def push_to_hub(folder: str | os.PathLike, repo_id: str, token: str | None = None,
                private: bool | None = None, commit_message: str = "Upload prmkit model") -> str:
    """Upload a saved model folder (``MODEL_FILES`` only) to ``repo_id``, creating the
    repository if needed. Returns the commit URL."""
    from huggingface_hub import HfApi

    from prmkit.model import read_config

    read_config(folder)  # only a complete, valid model goes up
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                             allow_patterns=MODEL_FILES, commit_message=commit_message)
    return str(info)

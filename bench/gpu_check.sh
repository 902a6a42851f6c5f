#!/usr/bin/env bash
# prmkit's device check: its GPU paths on the demo world, within 5 minutes on one GPU.
#
# Usage:
#   bash bench/gpu_check.sh                  # on a machine with a CUDA GPU
#   bash bench/gpu_check.sh --device cpu     # dry run of the same checks on the CPU, smaller
#   PYTHON=/opt/py/bin/python GPU_CHECK_TIMEOUT=290 bash bench/gpu_check.sh --work /tmp/check
#
# What it checks (bench/gpu_check.py has the details and the tolerances):
#   1. the demo world embedded in bfloat16 on the GPU through prmkit's pipeline, hidden states
#      (tokens/s) then hidden states and surprise, the causal default (tokens/s); a head trained
#      on the GPU with train(..., device) (batches/s);
#   2. LoRA fine-tuning of the backbone, a few hundred optimizer steps (steps/s), and the saved
#      model reloaded with PRM.from_pretrained(out, device) scoring as the one in memory did;
#   3. step vectors, hidden states and surprise apart: float32 on the GPU vs the CPU (max
#      relative difference <= 1e-4), bfloat16 vs float32 (<= 5e-2);
#   4. with 2 GPUs or more: two processes under torch.distributed.run (NCCL) sharing the
#      embedding cache and training the head under DDP, against one process (vectors <= 1e-3,
#      weights and probabilities <= 1e-4); with one GPU it says it skipped this, and why.
# Then a PASS/FAIL line per check and a summary.
#
# How long: about 2-3 minutes on one GPU (estimated: sized from CPU runs, not yet timed on a
# GPU); it is stopped after GPU_CHECK_TIMEOUT seconds (default 290). The dry run takes about a
# minute on 2 CPU cores.
#
# Needs: Python with torch, transformers, tokenizers, numpy, safetensors and tqdm; peft for the
# LoRA check (skipped, and said so, without it). Nothing is downloaded: the backbone is a random
# llama built from a config and its tokenizer is trained on the spot. prmkit runs from this tree
# (PYTHONPATH=src), not from an installed copy; none of its optional data packages is needed.
#
# Exit status: 0 every check passed (or there is no CUDA GPU: "skipped: ..."), 1 a check failed,
# 2 no usable Python/torch, 124 the time limit.

set -u -o pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
LIMIT="${GPU_CHECK_TIMEOUT:-290}"
SECONDS=0

device=cuda
previous=""
for arg in "$@"; do
    case "$arg" in
        --device=*) device="${arg#--device=}" ;;
        *) [ "$previous" = "--device" ] && device="$arg" ;;
    esac
    previous="$arg"
done

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "gpu_check: no Python at '$PYTHON' (set PYTHON=/path/to/python)" >&2
    exit 2
fi

if [ "$device" = "cuda" ]; then
    reason="$("$PYTHON" - <<'EOF'
import torch

if not torch.cuda.is_available():
    if torch.version.cuda is None and torch.version.hip is None:
        print(f"torch {torch.__version__} is a CPU-only build")
    else:
        print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: no driver, "
              "no device, or CUDA_VISIBLE_DEVICES empty")
EOF
)"
    status=$?
    if [ $status -ne 0 ]; then
        echo "gpu_check: $PYTHON cannot import torch (exit $status); install torch first" >&2
        exit 2
    fi
    if [ -n "$reason" ]; then
        echo "skipped: no CUDA GPU ($reason)"
        exit 0
    fi
fi

runner=()
if command -v timeout >/dev/null 2>&1; then
    runner=(timeout -k 15 "$LIMIT")
fi
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
${runner[@]+"${runner[@]}"} "$PYTHON" -u bench/gpu_check.py "$@"
status=$?
if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    echo "FAIL: the check ran past its limit of ${LIMIT} s (GPU_CHECK_TIMEOUT)"
fi
echo "gpu_check: device $device, total ${SECONDS} s, exit $status"
exit $status

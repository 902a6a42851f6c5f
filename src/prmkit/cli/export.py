"""``prmkit export``: a trained PRM in another library's format."""

from __future__ import annotations

from prmkit.cli.common import add_common, command

EXAMPLES = """examples:
  prmkit train data.jsonl --out runs/tc --finetune lora --head linear --pooling last --layer -1 \\
      --features hidden
  prmkit export runs/tc --to token-classification --out runs/tc-hf
  prmkit score token-classification:runs/tc-hf data.jsonl"""


def add_parser(sub) -> None:
    p = command(sub, "export", "write a trained PRM as a transformers token-classification model",
                description="Write a prmkit PRM as a transformers model loadable with "
                "AutoModelForTokenClassification, whose logit at each step's last token is the "
                "PRM's calibrated step score (sigmoid gives the probability). Only PRMs of that "
                "shape can be exported: a causal backbone read in context, hidden features of "
                "the last layer at the step's last token (--pooling last --layer -1), and the "
                "linear head (--head linear), frozen or fine-tuned; others are refused with the "
                "reason.", epilog=EXAMPLES)
    p.add_argument("model", help="folder written by `prmkit train`")
    p.add_argument("--to", choices=("token-classification",), default="token-classification",
                   help="the format to write")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_common(p)


def cmd_export(args) -> dict:
    from prmkit.export import export_token_classification

    result = export_token_classification(args.model, args.out, overwrite=args.overwrite)
    if not args.json:
        print(f"wrote {result['architecture']} ({result['dtype']}) to {result['out']}; score "
              f"with: prmkit score token-classification:{result['out']} DATA")
    return result

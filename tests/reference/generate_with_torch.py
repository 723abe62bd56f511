#!/usr/bin/env python3
"""Greedy generation with the independent PyTorch model, for checking whtlm's.

    generate_with_torch.py CHECKPOINT --prompt-tokens 1,2,3 --max-new-tokens N

Each step recomputes the whole sequence (no cache) in float64 and appends the
argmax of the last position's logits (lowest id on a tie). Prints the generated
token ids, comma-separated, and the smallest gap between the best and the second
best logit seen (a small gap means an fp32 engine may legitimately differ).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--prompt-tokens", required=True)
    ap.add_argument("--max-new-tokens", type=int, required=True)
    a = ap.parse_args()
    model = torch_model.from_checkpoint(a.checkpoint, dtype=torch.float64)
    seq = [int(t) for t in a.prompt_tokens.split(",")]
    out, gap = [], float("inf")
    with torch.no_grad():
        for _ in range(a.max_new_tokens):
            logits = model.forward(torch.tensor([seq], dtype=torch.int64))[0, -1]
            top2 = torch.topk(logits, 2)
            gap = min(gap, float(top2.values[0] - top2.values[1]))
            nxt = int(torch.argmax(logits))
            out.append(nxt)
            seq.append(nxt)
    print(",".join(str(t) for t in out))
    print(f"smallest top-2 logit gap {gap:.3e}", file=sys.stderr)


if __name__ == "__main__":
    main()

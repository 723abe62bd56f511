#!/usr/bin/env python3
"""PyTorch GPU training throughput and peak memory, to put beside
`whtlm bench train --device cuda` (scripts/gpu-check runs both).

Usage:
  torch_gpu_train.py [--preset gpt2-124m[,gpt2-350m]] [--proj dense,wht,identity]
                     [--batch 8] [--seq 1024] [--vocab 50304]
                     [--warmup 3] [--steps 5] [--reps 3] [--json FILE]
                     [--device cuda|cpu] [--dtype auto|bf16|fp32]
                     [--layers L --d D --heads H]   (override the preset's shape)

The model is a compact GPT-2 written here (tests/reference/torch_model.py is a
functional reference in float64/fp32 with its own attention; this one is the usual
fast PyTorch recipe): learned positions, pre-LayerNorm blocks, fused c_attn,
gelu(tanh) MLP of width 4d, head tied to the token embedding, biases everywhere.
Attention output projection (W_O):
  dense     nn.Linear(d, d) with bias
  wht       y = scale * (H x / sqrt(d)) + bias, H = A (x) B the Hadamard matrix of
            tests/reference/torch_model.py (Sylvester, or a Paley factor of order
            12/20/28 times Sylvester), applied as x.view(..., p, q) and two small
            matmuls (A and B of order ~sqrt(d), entries +-1, exact in bf16); scale and
            bias are learnable per channel, without weight decay
  identity  y = x
Each step: forward under torch.autocast(bfloat16) (matmuls in bf16, weights,
LayerNorm and the loss in fp32), F.scaled_dot_product_attention(is_causal=True),
mean cross-entropy, backward, clip_grad_norm_(1.0), torch.optim.AdamW(fused=True,
lr 3e-4, betas (0.9, 0.95), weight decay 0.1 on matrices only), zero_grad.  No
torch.compile (its compile time does not fit the GPU check's budget; --compile turns
it on).

Timing: W warm-up steps, then R reps of S steps each, timed with CUDA events around
the S steps; tokens/s of a rep = batch * seq * S / seconds; the median over reps is
reported.  Projections and presets run one after another, each with a fresh model;
peak_bytes is torch.cuda.max_memory_allocated() over that model's whole life
(construction, optimizer state, every step), after the previous model was freed.

Output: a line per measurement on stdout; with --json FILE also JSON lines appended
to FILE: {"bench": "train", "impl": "pytorch", "preset", "proj", "batch", "seq",
"vocab", "tokens_per_s", "min", "max", "samples", "peak_bytes", "params", ...}.

--device cpu runs the same code on the CPU in fp32 (autocast and the fused
optimizer are skipped where this torch lacks them; without
F.scaled_dot_product_attention a plain masked softmax is used): for checking the
script on a machine without a GPU, not for measurements.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_model as tm  # noqa: E402  (the Hadamard matrices whtlm uses)

# name: (layers, d, heads); the GPT-2 shapes of src/model/config.cpp.
PRESETS = {
    "gpt2-124m": (12, 768, 12),
    "gpt2-350m": (24, 1024, 16),
    "base": (8, 1024, 16),
    "tiny-gpt2": (4, 256, 4),
    "small-gpt2": (6, 512, 8),
}
PROJECTIONS = ("dense", "wht", "identity")
# torch.cuda.OutOfMemoryError is torch >= 1.13's name for CUDA's allocation failure.
OutOfMemory = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def hadamard_factors(d: int):
    """+-1 matrices A [p, p], B [q, q], both symmetric, with A (x) B = H_d (whtlm's)."""
    if tm.is_power_of_two(d):
        k = d.bit_length() - 1
        p = 1 << (k // 2)
        return tm.sylvester_hadamard(p), tm.sylvester_hadamard(d // p)
    for base in (12, 20, 28):
        if d % base == 0 and tm.is_power_of_two(d // base):
            m = d // base
            # A = H_base (x) H_r, B = H_{m/r}; r balances the two orders.
            best = min((base * r + m // r, r) for r in (1 << i for i in range(m.bit_length()))
                       if r <= m)
            r = best[1]
            return np.kron(tm._paley_order(base), tm.sylvester_hadamard(r)), \
                tm.sylvester_hadamard(m // r)
    raise SystemExit(f"--proj wht: no Hadamard matrix of order {d} (need 2^m or 12/20/28 * 2^m)")


class Hadamard(nn.Module):
    """y = scale * (H x / sqrt(d)) + bias with H = A (x) B: the rows of x viewed as
    p x q matrices X (index i*q + j) map to A X B (A, B symmetric)."""

    def __init__(self, d: int):
        super().__init__()
        a, b = hadamard_factors(d)
        self.register_buffer("A", torch.tensor(a, dtype=torch.float32), persistent=False)
        self.register_buffer("B", torch.tensor(b, dtype=torch.float32), persistent=False)
        self.inv_sqrt_d = 1.0 / math.sqrt(d)
        self.scale = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self.A.shape[0], self.B.shape[0]
        lead = x.shape[:-1]
        y = x.reshape(-1, p, q)
        y = torch.matmul(y, self.B.to(y.dtype))  # mixes j (the low index)
        y = torch.matmul(self.A.to(y.dtype), y)  # mixes i, broadcast over rows
        return y.reshape(*lead, p * q) * (self.scale * self.inv_sqrt_d) + self.bias

    def extra_repr(self) -> str:
        return f"A {tuple(self.A.shape)} (x) B {tuple(self.B.shape)}"


def causal_attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # torch < 2.0 (the CPU check only): masked softmax.
    t = q.shape[-2]
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    s = s.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, proj: str):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        if proj == "dense":
            self.attn_proj = nn.Linear(d, d)
        elif proj == "wht":
            self.attn_proj = Hadamard(d)
        else:
            self.attn_proj = nn.Identity()
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q = q.view(b, t, self.heads, hd).transpose(1, 2)
        k = k.view(b, t, self.heads, hd).transpose(1, 2)
        v = v.view(b, t, self.heads, hd).transpose(1, 2)
        a = causal_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.attn_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, layers: int, d: int, heads: int, vocab: int, max_pos: int, proj: str):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(max_pos, d)
        self.blocks = nn.ModuleList(Block(d, heads, proj) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        # GPT-2's initialisation; residual-stream projections scaled by 1/sqrt(2 L).
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02
                if name.endswith(("attn_proj.weight", "mlp_proj.weight")):
                    std = 0.02 / math.sqrt(2 * layers)
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias") and "ln_" not in name:
                nn.init.zeros_(p)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        x = self.wte(tokens) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def make_optimizer(model: nn.Module, lr: float, device: str):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=lr, betas=(0.9, 0.95), eps=1e-8)
    if device == "cuda":
        return torch.optim.AdamW(groups, fused=True, **kw), "AdamW(fused)"
    return torch.optim.AdamW(groups, **kw), "AdamW"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="torch_gpu_train.py",
        description="PyTorch GPU training tokens/s and peak memory (see the docstring).",
    )
    p.add_argument("--preset", default="gpt2-124m",
                   help="comma-separated: " + ", ".join(PRESETS))
    p.add_argument("--proj", default=",".join(PROJECTIONS), help="comma-separated projections")
    p.add_argument("--layers", type=int, help="override the preset's layer count")
    p.add_argument("--d", type=int, help="override the preset's width")
    p.add_argument("--heads", type=int, help="override the preset's head count")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    p.add_argument("--steps", type=int, default=5, help="timed steps per rep")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"),
                   help="autocast dtype (auto: bf16 on cuda, fp32 on cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--json", metavar="FILE", help="append JSON lines to FILE ('-': stdout)")
    a = p.parse_args(argv)
    a.presets = [s for s in a.preset.split(",") if s]
    for s in a.presets:
        if s not in PRESETS:
            p.error(f"--preset {s!r} is not one of {', '.join(PRESETS)}")
    a.projs = [s for s in a.proj.split(",") if s]
    for s in a.projs:
        if s not in PROJECTIONS:
            p.error(f"--proj {s!r} is not one of {', '.join(PROJECTIONS)}")
    for n in ("batch", "seq", "vocab", "steps", "reps"):
        if getattr(a, n) < 1:
            p.error(f"--{n} must be >= 1")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    if a.dtype == "auto":
        a.dtype = "bf16" if a.device == "cuda" else "fp32"
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False")
    return a


def measure(a, preset: str, proj: str) -> dict:
    layers, d, heads = PRESETS[preset]
    layers, d, heads = a.layers or layers, a.d or d, a.heads or heads
    if d % heads:
        raise SystemExit(f"d {d} is not a multiple of heads {heads}")
    dev = torch.device(a.device)
    cuda = a.device == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(a.seed)
    model = GPT(layers, d, heads, a.vocab, max(a.seq, 1024), proj).to(dev)
    params = sum(p.numel() for p in model.parameters())
    opt, opt_name = make_optimizer(model, a.lr, a.device)
    step_model = torch.compile(model) if a.compile else model
    amp = a.dtype == "bf16"
    g = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    batches = [(torch.randint(0, a.vocab, (a.batch, a.seq), generator=g).to(dev),
                torch.randint(0, a.vocab, (a.batch, a.seq), generator=g).to(dev))
               for _ in range(2)]
    state = {"i": 0}

    def step() -> torch.Tensor:
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=amp):
            loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    t0 = time.perf_counter()
    loss = None
    for _ in range(a.warmup):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    first_loss = float(loss) if loss is not None else float("nan")
    log(f"[{preset} {proj}] {params / 1e6:.2f}M parameters; warm-up {a.warmup} steps "
        f"{time.perf_counter() - t0:.2f} s, loss {first_loss:.4f}")

    tokens_per_rep = a.batch * a.seq * a.steps
    samples = []
    for r in range(a.reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(a.steps):
                loss = step()
            end.record()
            end.synchronize()
            dt = start.elapsed_time(end) / 1000.0
        else:
            t0 = time.perf_counter()
            for _ in range(a.steps):
                loss = step()
            dt = time.perf_counter() - t0
        last = float(loss)
        if not math.isfinite(last):
            raise SystemExit(f"[{preset} {proj}] loss is not finite: {last}")
        samples.append(tokens_per_rep / dt)
        log(f"[{preset} {proj}] rep {r + 1}/{a.reps}: {a.steps} steps {dt:.3f} s, "
            f"{samples[-1]:.0f} tokens/s, loss {last:.4f}")

    peak = torch.cuda.max_memory_allocated() if cuda else None
    rec = {
        "bench": "train",
        "impl": "pytorch",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "preset": preset,
        "proj": proj,
        "layers": layers,
        "d": d,
        "heads": heads,
        "batch": a.batch,
        "seq": a.seq,
        "vocab": a.vocab,
        "dtype": a.dtype,
        "tokens_per_s": round(statistics.median(samples), 1),
        "min": round(min(samples), 1),
        "max": round(max(samples), 1),
        "samples": [round(s, 1) for s in samples],
        "reps": a.reps,
        "steps": a.steps,
        "warmup": a.warmup,
        "peak_bytes": peak,
        "params": params,
        "attention": "sdpa(is_causal)" if hasattr(F, "scaled_dot_product_attention")
        else "matmul+mask",
        "optimizer": opt_name,
        "compile": bool(a.compile),
        "wht": (f"A{tuple(model.blocks[0].attn_proj.A.shape)} (x) "
                f"B{tuple(model.blocks[0].attn_proj.B.shape)}" if proj == "wht" else None),
        "loss_first": round(first_loss, 5) if math.isfinite(first_loss) else None,
        "loss_last": round(float(loss), 5),
    }
    return rec


def main(argv=None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.device == "cuda":
        # Only fp32 matmuls outside autocast are affected (none in the step).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        log(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")
    else:
        log(f"torch {torch.__version__}, cpu")
    out = None
    if a.json and a.json != "-":
        out = open(a.json, "a", encoding="utf-8")
    status = 0
    for preset in a.presets:
        for proj in a.projs:
            try:
                rec = measure(a, preset, proj)
            except OutOfMemory as e:  # keep the other measurements
                log(f"[{preset} {proj}] out of memory: {e}")
                rec = {"bench": "train", "impl": "pytorch", "preset": preset, "proj": proj,
                       "batch": a.batch, "seq": a.seq, "error": "out of memory"}
                status = 1
            line = json.dumps(rec)
            if a.json == "-":
                print(line, flush=True)
            elif out is not None:
                out.write(line + "\n")
                out.flush()
            if "error" not in rec and a.json != "-":
                peak = rec["peak_bytes"]
                print(f"pytorch {preset:<10} {proj:<8} {rec['tokens_per_s']:>10.0f} tokens/s "
                      f"(min {rec['min']:.0f}, max {rec['max']:.0f}), peak "
                      f"{'-' if peak is None else f'{peak / 2**20:.0f} MiB'}, "
                      f"{rec['params'] / 1e6:.1f}M params, B={a.batch} T={a.seq} {a.dtype}",
                      flush=True)
    if out is not None:
        out.close()
    return status


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""PyTorch training throughput of whtlm's models, to put beside `whtlm bench train`.

Usage:
  torch_train.py --config CONFIG.json
                 | --family llama|gpt2 --layers L --d D --heads H [--kv-heads KV] [--ff FF]
                   --vocab V [--proj dense|wht|identity[,...]]
                 --batch B --seq T --threads N[,N...] --steps S --warmup W --reps R [--json [FILE]]

The model is tests/reference/torch_model.py in its fast mode, fp32, on random
tokens.  Each timed step is a full training step: forward, mean cross-entropy,
backward, clip_grad_norm_(1.0), AdamW step (torch.optim.AdamW, lr 3e-4, weight
decay 0.1 on matrices and 0 on norms, biases and the WHT scale/bias; foreach=True,
which measured ~15% faster than the per-tensor loop for a 29M-parameter model on
this CPU), zero_grad(set_to_none=True).  A rep times S steps after W warm-up
steps; tokens/s of a rep = B*T*S / seconds.  With several --proj or --threads
values every combination is one measurement and the reps are taken in rounds,
rotating the order, so that a burst of outside load spoils one sample of several
cells rather than all samples of one.  Output: one JSON line per measurement
{"impl":"pytorch","torch":...,"proj":...,"batch":...,"seq":...,"threads":...,
"tokens_per_s": median, "min":..., "max":..., "reps":..., ...details}; progress on stderr.

Implementation choices (torch 1.13, CPU):
  * attention: one baddbmm of Q K^T with a cached additive causal mask, softmax,
    bmm with V.  torch 1.13 has no public F.scaled_dot_product_attention; the
    private F._scaled_dot_product_attention(is_causal=True) runs the same math on
    CPU and measured the same (55.4 vs 56.7 ms fwd+bwd, B=8 H=8 T=256 hd=64, 1 thread).
  * wht projection: H_d = A (x) B with A, B Hadamard of order ~sqrt(d) (Sylvester
    factors, or H_K (x) H_r times Sylvester for d = K*2^m), applied as two 2-D GEMMs
    and one transpose copy, in an autograd.Function whose backward is the same
    transform.  Forward only, 2048 rows, 1 thread, min of 15 (2026-11-28, shared
    2-core Zen 4 VM): d=512: dense matmul with H 14.7 ms, log2(d) butterfly stages
    (view/stack) 12.0 ms, Kronecker 1.8 ms; d=1024: 58.9 / 24.0 / 4.6 ms; d=768
    (no butterfly): dense 32.0, Kronecker 3.2 ms.  --wht-impl picks another one.

Environment (what we found on Debian 12, torch 1.13.0a0 = Debian's 1.13.1+dfsg):
  * torch.__config__.show() says BLAS_INFO=generic, LAPACK_INFO=generic, "MKL not
    found", oneDNN (MKL-DNN) 2.6.3, OpenMP, CPU capability AVX2.  libtorch_cpu.so is
    linked to the system libblas.so.3 and liblapack.so.3 (NEEDED entries), i.e.
    whatever update-alternatives selects for libblas.so.3-x86_64-linux-gnu; here
    /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 (libopenblas0-openmp
    0.3.21, priority 95, auto mode; BLIS-openmp and reference BLAS are the other
    alternatives).  So fp32 matmuls (mm/addmm/bmm/baddbmm) run in OpenBLAS, threaded
    with the same libgomp as torch; torch.set_num_threads() sets OpenMP's thread
    count, which OpenBLAS's OpenMP build follows.
  * OpenBLAS 0.3.21 (DYNAMIC_ARCH) identifies this Zen 4 CPU (it has avx512_bf16) as
    "Cooperlake"; OPENBLAS_CORETYPE=SkylakeX forces the SkylakeX kernels.  The
    variable is read when the library loads, so set it in the environment before
    starting python.  For best speed: Debian's libopenblas0-openmp selected as
    libblas.so.3 (check: update-alternatives --display libblas.so.3-x86_64-linux-gnu)
    and OPENBLAS_CORETYPE=SkylakeX.  Measured 2026-11-28 on the shared 2-core VM
    (llama d=512 L=6 H=8 V=8192 ff=1536, B=8 T=256, dense): 1 thread 534 / 535
    tokens/s as loaded (Cooperlake) vs 533 / 526 with SkylakeX, i.e. no difference
    within the noise; 2 threads ~890-1000 tokens/s when the machine was quiet (2-thread
    samples collapse to 100-300 tokens/s whenever another process takes a core).
    The JSON's "openblas_core" field records which kernels were in effect.
    Forcing OPENBLAS_CORETYPE=Nehalem drops torch.mm from ~103 to ~33 GFLOP/s,
    which confirms that torch's matmuls do go through this OpenBLAS.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))

import torch  # noqa: E402

import torch_model as tm  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def openblas_core() -> str:
    """The OpenBLAS kernel family in use, if torch's BLAS is OpenBLAS."""
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name)
            f = lib.openblas_get_corename
        except (OSError, AttributeError):
            continue
        f.restype = ctypes.c_char_p
        return f().decode()
    return "n/a"


def parse_list(text: str, kind=str):
    return [kind(t) for t in text.split(",") if t.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="torch_train.py",
        description="PyTorch training throughput of whtlm's model families (see the docstring).",
    )
    p.add_argument("--config", help="config.json (or a checkpoint folder holding one)")
    p.add_argument("--family", choices=("llama", "gpt2"))
    p.add_argument("--layers", type=int)
    p.add_argument("--d", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--kv-heads", type=int, help="llama only; default = heads")
    p.add_argument("--ff", type=int, help="default: 4d (gpt2), 8d/3 rounded up to 256 (llama)")
    p.add_argument("--vocab", type=int)
    p.add_argument("--proj", help="dense|wht|identity, comma-separated for several (default: "
                   "the config's, or dense)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--threads", default=str(os.cpu_count() or 1), help="N or N1,N2,...")
    p.add_argument("--steps", type=int, default=5, help="timed steps per rep")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the reps")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="JSON lines to stdout (or appended to FILE)")
    p.add_argument("--wht-impl", choices=("kron", "matmul", "butterfly"), default="kron")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: torch.autocast('cpu', bfloat16) around forward and loss, the "
                        "standard mixed-precision recipe (fp32 weights, gradients, optimizer)")
    a = p.parse_args(argv)

    if a.config:
        path = a.config
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path, "r", encoding="utf-8") as f:
            base = json.load(f)
        tm.spec_from_config(base, path)  # validates
        default_proj = base.get("attn_output_projection", "dense")
        a.base_config = base
    else:
        missing = [n for n in ("family", "layers", "d", "heads", "vocab") if getattr(a, n) is None]
        if missing:
            p.error("without --config, need --" + ", --".join(missing))
        a.base_config = None
        default_proj = "dense"
    a.projs = parse_list(a.proj or default_proj)
    for pr in a.projs:
        if pr not in tm.PROJECTIONS:
            p.error(f"--proj {pr!r} is not one of {tm.PROJECTIONS}")
    a.thread_list = parse_list(a.threads, int)
    if not a.thread_list or min(a.thread_list) < 1:
        p.error("--threads must be positive")
    for n in ("batch", "seq", "steps", "reps"):
        if getattr(a, n) < 1:
            p.error(f"--{n} must be >= 1")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    return a


def config_for(a, proj: str) -> dict:
    if a.base_config is not None:
        cfg = dict(a.base_config)
        cfg["attn_output_projection"] = proj
        return cfg
    max_pos = max(a.seq, 1024 if a.family == "gpt2" else 2048)
    return tm.make_config(a.family, a.vocab, a.d, a.layers, a.heads, proj,
                          kv_heads=a.kv_heads, ff=a.ff, max_pos=max_pos)


class Trainer:
    def __init__(self, config: dict, a, seed: int):
        torch.manual_seed(seed)
        self.model = tm.random_model(config, dtype=torch.float32, seed=seed, fast=True,
                                     wht_impl=a.wht_impl)
        spec = self.model.spec
        if spec.family == "gpt2" and a.seq > spec.max_pos:
            raise SystemExit(f"--seq {a.seq} exceeds n_positions {spec.max_pos}")
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
            lr=a.lr, foreach=True,
        )
        g = torch.Generator().manual_seed(seed + 1)
        self.batches = [
            (torch.randint(0, spec.vocab, (a.batch, a.seq), generator=g),
             torch.randint(0, spec.vocab, (a.batch, a.seq), generator=g))
            for _ in range(4)
        ]
        self.i = 0
        self.bf16 = a.precision == "bf16"
        self.last_loss = float("nan")
        self.first_loss = None

    def step(self) -> None:
        tokens, targets = self.batches[self.i % len(self.batches)]
        self.i += 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model.forward(tokens)
            loss = self.model.loss(logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.last_loss = loss.item()
        if self.first_loss is None:
            self.first_loss = self.last_loss


def main(argv=None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    core = openblas_core()
    env_core = os.environ.get("OPENBLAS_CORETYPE", "")
    log(f"torch {torch.__version__}, OpenBLAS core {core}"
        f"{' (OPENBLAS_CORETYPE=' + env_core + ')' if env_core else ''}, "
        f"cpu_count {os.cpu_count()}")

    cells = []  # (proj, threads)
    trainers = {}
    for i, proj in enumerate(a.projs):
        cfg = config_for(a, proj)
        t = Trainer(cfg, a, a.seed)
        trainers[proj] = t
        sp = t.model.spec
        log(f"[{proj}] {sp.family} L={sp.layers} d={sp.d} H={sp.heads} KV={sp.kv_heads} ff={sp.ff} "
            f"V={sp.vocab}: {t.model.num_parameters() / 1e6:.2f}M parameters"
            f"{', wht via ' + t.model.wht_impl if proj == 'wht' else ''}")
        for n in a.thread_list:
            cells.append((proj, n))

    tokens_per_rep = a.batch * a.seq * a.steps
    for proj, n in cells:
        torch.set_num_threads(n)
        t0 = time.perf_counter()
        for _ in range(a.warmup):
            trainers[proj].step()
        if a.warmup:
            log(f"[{proj} t={n}] warm-up {a.warmup} steps {time.perf_counter() - t0:.2f} s, "
                f"loss {trainers[proj].last_loss:.4f}")

    samples = {c: [] for c in cells}
    for r in range(a.reps):
        k = r % len(cells)
        for proj, n in cells[k:] + cells[:k]:
            torch.set_num_threads(n)
            tr = trainers[proj]
            t0 = time.perf_counter()
            for _ in range(a.steps):
                tr.step()
            dt = time.perf_counter() - t0
            if not math.isfinite(tr.last_loss):
                raise SystemExit(f"[{proj}] loss is not finite: {tr.last_loss}")
            samples[(proj, n)].append(tokens_per_rep / dt)
            log(f"[{proj} t={n}] rep {r + 1}/{a.reps}: {a.steps} steps {dt:.3f} s, "
                f"{tokens_per_rep / dt:.1f} tokens/s, loss {tr.last_loss:.4f}")

    out = None
    if a.json and a.json != "-":
        out = open(a.json, "a", encoding="utf-8")
    for proj, n in cells:
        s = samples[(proj, n)]
        tr = trainers[proj]
        sp = tr.model.spec
        rec = {
            "impl": "pytorch",
            "torch": torch.__version__,
            "proj": proj,
            "batch": a.batch,
            "seq": a.seq,
            "threads": n,
            "precision": a.precision,
            "tokens_per_s": round(statistics.median(s), 2),
            "min": round(min(s), 2),
            "max": round(max(s), 2),
            "reps": a.reps,
            "steps": a.steps,
            "warmup": a.warmup,
            "family": sp.family,
            "layers": sp.layers,
            "d": sp.d,
            "heads": sp.heads,
            "kv_heads": sp.kv_heads,
            "ff": sp.ff,
            "vocab": sp.vocab,
            "params": tr.model.num_parameters(),
            "wht_impl": tr.model.wht_impl if proj == "wht" else None,
            "attention": "baddbmm+mask,softmax,bmm",
            "optimizer": "AdamW(lr=%g,foreach)" % a.lr,
            "openblas_core": core,
            "OPENBLAS_CORETYPE": env_core or None,
            "loss_first": round(tr.first_loss, 5),
            "loss_last": round(tr.last_loss, 5),
            "samples": [round(x, 2) for x in s],
        }
        line = json.dumps(rec)
        if a.json == "-":
            print(line, flush=True)
        elif out is not None:
            out.write(line + "\n")
        if a.json != "-":
            print(f"pytorch {proj:<8} threads {n}: {rec['tokens_per_s']:.1f} tokens/s "
                  f"(min {rec['min']:.1f}, max {rec['max']:.1f}, {a.reps} reps of {a.steps} steps, "
                  f"B={a.batch} T={a.seq})", flush=True)
    if out is not None:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

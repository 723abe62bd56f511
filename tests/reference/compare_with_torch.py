#!/usr/bin/python3
"""Checks whtlm's logits, loss and gradients against an independent PyTorch model.

Usage:
  compare_with_torch.py CHECKPOINT_DIR CASE.safetensors [--dtype float64|float32]
                        [--logits-rtol 1e-5] [--grad-rtol 1e-4]
  compare_with_torch.py --self-test [--keep DIR]

CHECKPOINT_DIR holds config.json and model.safetensors (see torch_model.py).
CASE.safetensors (written by the C++ test) holds:
  tokens   I32 [B,T]        input token ids
  targets  I32 [B,T]        next-token targets
  logits   F32 [B,T,V]      whtlm's logits
  loss     F32 [] or [1]    whtlm's mean cross entropy over the B*T positions
  grad.<name> F32           whtlm's gradient of that loss for every parameter <name>
  hadamard F32 [d,d]        optional: the +-1 matrix of the wht projection; required
                            when d is not a power of two; when d is a power of two it
                            must equal the Sylvester matrix in natural order.

The reference is computed in --dtype (float64 by default).  Relative error of a
tensor = max|ours - ref| / max|ref| (absolute error when ref is all zero).  The
logits and the loss must be within --logits-rtol, every gradient within
--grad-rtol, and the gradients must cover exactly the model's parameters.

Prints one line per tensor (name, relative error, ok/FAIL) and a summary line.
Exit status: 0 all pass; 1 a mismatch (an error over tolerance, a non-finite
value, a missing/extra/misshapen gradient or logits, a wrong Hadamard matrix);
2 usage or format errors (unreadable files, missing or mistyped fields), with a
message naming the file and field.

--self-test writes random checkpoints and cases made by this module's own float32
model (both families, all three projections, grouped-query attention, a d that is
not a power of two) and checks that they pass and that corrupted cases fail.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import torch_model as tm  # noqa: E402

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit 2 with our message, not argparse's own exit
        raise UsageError(f"{self.prog}: {message}")


def _parse_args(argv):
    p = _Parser(prog="compare_with_torch.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", help="checkpoint folder (config.json, model.safetensors)")
    p.add_argument("case", nargs="?", help="CASE.safetensors written by the C++ test")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--logits-rtol", type=float, default=1e-5)
    p.add_argument("--grad-rtol", type=float, default=1e-4)
    p.add_argument("--self-test", action="store_true", help="run the built-in self test")
    p.add_argument("--keep", metavar="DIR", help="self-test: write the cases under DIR and keep them")
    p.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    a = p.parse_args(argv)
    if not a.self_test and (a.checkpoint is None or a.case is None):
        raise UsageError("compare_with_torch.py: need CHECKPOINT_DIR and CASE.safetensors (or --self-test)")
    if a.logits_rtol <= 0 or a.grad_rtol <= 0:
        raise UsageError("compare_with_torch.py: tolerances must be positive")
    return a


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if not np.all(np.isfinite(ours)):
        return math.inf
    diff = float(np.max(np.abs(ours - ref))) if ours.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


def _field(case, dtypes, path, name, want_dtype, ndim=None):
    if name not in case:
        raise tm.FormatError(f"{path}: missing tensor '{name}'")
    if dtypes[name] != want_dtype:
        raise tm.FormatError(f"{path}: tensor '{name}' has dtype {dtypes[name]}, expected {want_dtype}")
    arr = case[name]
    if ndim is not None and arr.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise tm.FormatError(f"{path}: tensor '{name}' has shape {list(arr.shape)}, expected {ndim}-D")
    return arr


def compare(checkpoint, case_path, dtype="float64", logits_rtol=1e-5, grad_rtol=1e-4, quiet=False, out=sys.stdout):
    """Returns the exit status; raises tm.FormatError on format errors."""
    config, weights = tm.load_checkpoint(checkpoint)
    spec = tm.spec_from_config(config, os.path.join(checkpoint, "config.json"))
    tm.check_weights(spec, weights, os.path.join(checkpoint, "model.safetensors"))
    case, dtypes, _ = tm.load_safetensors(case_path, with_dtypes=True)

    tokens = _field(case, dtypes, case_path, "tokens", "I32", 2)
    targets = _field(case, dtypes, case_path, "targets", "I32", 2)
    logits = _field(case, dtypes, case_path, "logits", "F32")
    loss = _field(case, dtypes, case_path, "loss", "F32", (0, 1))
    if loss.size != 1:
        raise tm.FormatError(f"{case_path}: tensor 'loss' has shape {list(loss.shape)}, expected [] or [1]")
    B, T = tokens.shape
    if B == 0 or T == 0:
        raise tm.FormatError(f"{case_path}: tensor 'tokens' is empty ({[B, T]})")
    if targets.shape != tokens.shape:
        raise tm.FormatError(
            f"{case_path}: tensor 'targets' has shape {list(targets.shape)}, 'tokens' {list(tokens.shape)}"
        )
    for name, arr in (("tokens", tokens), ("targets", targets)):
        if arr.min() < 0 or arr.max() >= spec.vocab:
            raise tm.FormatError(
                f"{case_path}: tensor '{name}' holds ids outside [0, {spec.vocab}) "
                f"(min {arr.min()}, max {arr.max()})"
            )
    if spec.family == "gpt2" and T > spec.max_pos:
        raise tm.FormatError(f"{case_path}: sequence length {T} exceeds n_positions {spec.max_pos}")
    grads = OrderedDict()
    for name in case:
        if name.startswith("grad."):
            if dtypes[name] != "F32":
                raise tm.FormatError(f"{case_path}: tensor '{name}' has dtype {dtypes[name]}, expected F32")
            grads[name[5:]] = case[name]
    known = {"tokens", "targets", "logits", "loss", "hadamard"}
    stray = [n for n in case if n not in known and not n.startswith("grad.")]

    failures = 0
    lines = []

    def report(name, err, ok, note=""):
        nonlocal failures
        if not ok:
            failures += 1
        if ok and quiet:
            return
        e = f"{err:.3e}" if isinstance(err, float) else str(err)
        lines.append(f"{name:<56} {e:>10}  {'ok' if ok else 'FAIL'}{('  ' + note) if note else ''}")
        print(lines[-1], file=out)

    for n in stray:
        print(f"note: {case_path}: ignoring tensor '{n}'", file=out)

    # The Hadamard matrix.
    hadamard = None
    if "hadamard" in case:
        hm = _field(case, dtypes, case_path, "hadamard", "F32", 2)
        if spec.proj != "wht":
            print(f"note: {case_path}: 'hadamard' given but the projection is {spec.proj}; ignored", file=out)
        elif hm.shape != (spec.d, spec.d):
            report("hadamard", "shape", False, f"shape {list(hm.shape)}, expected {[spec.d, spec.d]}")
        else:
            h64 = hm.astype(np.float64)
            if tm.is_power_of_two(spec.d):
                ok = np.array_equal(h64, tm.sylvester_hadamard(spec.d))
                report("hadamard", "==" if ok else "!=", ok, "Sylvester, natural order")
            else:
                pm1 = bool(np.all(np.abs(h64) == 1.0))
                orth = pm1 and np.array_equal(h64 @ h64.T, spec.d * np.eye(spec.d))
                sym = np.array_equal(h64, h64.T)
                ok = pm1 and orth and sym
                ours = tm.hadamard_matrix_or_none(spec.d)
                same = ours is not None and np.array_equal(ours, h64)
                report(
                    "hadamard",
                    "valid" if ok else "invalid",
                    ok,
                    ("+-1 " if pm1 else "not +-1 ")
                    + ("H H^T = dI " if orth else "H H^T != dI ")
                    + ("symmetric" if sym else "not symmetric")
                    + ("; equals docs/hadamard.md construction" if same else "; differs from docs/hadamard.md construction"),
                )
            hadamard = h64
    if spec.proj == "wht" and hadamard is None and not tm.is_power_of_two(spec.d):
        if "hadamard" not in case:
            raise tm.FormatError(
                f"{case_path}: missing tensor 'hadamard' (d = {spec.d} is not a power of two)"
            )
    if failures:
        print(f"FAIL: {failures} check(s) failed before the model ran", file=out)
        return EXIT_MISMATCH

    tdtype = torch.float64 if dtype == "float64" else torch.float32
    model = tm.build_model(config, weights, dtype=tdtype, hadamard=hadamard, fast=False)
    tok = torch.from_numpy(tokens.astype(np.int64))
    tgt = torch.from_numpy(targets.astype(np.int64))
    ref_logits, ref_loss = model.forward_loss(tok, tgt)
    ref_loss.backward()

    expect_logits = (B, T, spec.vocab)
    if tuple(logits.shape) != expect_logits:
        report("logits", "shape", False, f"shape {list(logits.shape)}, expected {list(expect_logits)}")
    else:
        e = rel_err(logits, ref_logits.detach().numpy())
        report("logits", e, e <= logits_rtol)
    e = rel_err(loss.reshape(()), ref_loss.detach().numpy())
    report("loss", e, e <= logits_rtol, f"ours {float(loss.reshape(())):.7g} ref {float(ref_loss):.7g}")

    for name, p in model.named_parameters():
        key = "grad." + name
        if name not in grads:
            report(key, "missing", False)
            continue
        g = grads[name]
        if tuple(g.shape) != tuple(p.shape):
            report(key, "shape", False, f"shape {list(g.shape)}, expected {list(p.shape)}")
            continue
        ref = p.grad.detach().numpy() if p.grad is not None else np.zeros(tuple(p.shape))
        e = rel_err(g, ref)
        report(key, e, e <= grad_rtol)
    for name in grads:
        if name not in model.params:
            report("grad." + name, "extra", False, "not a parameter of this model")

    checked = 2 + len(model.params)
    if failures:
        print(f"FAIL: {failures} of {checked}+ checks failed "
              f"(logits/loss rtol {logits_rtol:g}, grad rtol {grad_rtol:g}, reference {dtype})", file=out)
        return EXIT_MISMATCH
    print(f"PASS: {checked} tensors within tolerance (logits/loss rtol {logits_rtol:g}, "
          f"grad rtol {grad_rtol:g}, reference {dtype})", file=out)
    return EXIT_OK


# ----------------------------------------------------------------------------------
# self test
# ----------------------------------------------------------------------------------


def _make_case(dirpath, config, seed, hadamard=None, B=2, T=9):
    """Writes a checkpoint and a CASE from this module's own float32 model."""
    ckpt = os.path.join(dirpath, "ckpt")
    weights = tm.random_weights(config, seed=seed, jitter=True)
    tm.save_checkpoint(ckpt, config, weights)
    cfg2, w2 = tm.load_checkpoint(ckpt)  # goes through our own reader
    model = tm.build_model(cfg2, w2, dtype=torch.float32, hadamard=hadamard, fast=True, wht_impl="kron")
    spec = model.spec
    g = torch.Generator().manual_seed(seed)
    tok = torch.randint(0, spec.vocab, (B, T), generator=g)
    tgt = torch.randint(0, spec.vocab, (B, T), generator=g)
    logits, loss = model.forward_loss(tok, tgt)
    loss.backward()
    case = OrderedDict()
    case["tokens"] = tok.numpy().astype(np.int32)
    case["targets"] = tgt.numpy().astype(np.int32)
    case["logits"] = logits.detach().numpy().astype(np.float32)
    case["loss"] = np.asarray(loss.item(), dtype=np.float32).reshape(())
    for name, p in model.named_parameters():
        case["grad." + name] = p.grad.numpy().astype(np.float32)
    if hadamard is not None:
        case["hadamard"] = hadamard.astype(np.float32)
    return ckpt, case


def self_test(keep=None):
    import io

    root = keep or tempfile.mkdtemp(prefix="whtlm_cmp_")
    os.makedirs(root, exist_ok=True)
    results = []

    def run(label, ckpt, case_path, want, **kw):
        buf = io.StringIO()
        try:
            rc = compare(ckpt, case_path, out=buf, **kw)
        except tm.FormatError as e:
            buf.write(f"error: {e}\n")
            rc = EXIT_USAGE
        ok = rc == want
        results.append(ok)
        last = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        detail = [ln for ln in last if "FAIL" in ln or ln.startswith("error")][:2] or last[-1:]
        print(f"[{'ok' if ok else 'BAD'}] {label}: exit {rc} (want {want}) | " + " | ".join(detail))
        if not ok:
            print(buf.getvalue())

    cases = [
        ("llama dense", "llama", "dense", 64, 4, 4, None),
        ("llama wht", "llama", "wht", 64, 4, 4, None),
        ("llama identity", "llama", "identity", 64, 4, 4, None),
        ("llama GQA dense (H=4, KV=2)", "llama", "dense", 64, 4, 2, None),
        ("llama GQA wht (H=8, KV=2)", "llama", "wht", 64, 8, 2, None),
        ("llama MQA identity (H=4, KV=1)", "llama", "identity", 64, 4, 1, None),
        ("gpt2 dense", "gpt2", "dense", 64, 4, None, None),
        ("gpt2 wht", "gpt2", "wht", 64, 4, None, None),
        ("gpt2 identity", "gpt2", "identity", 64, 4, None, None),
        ("gpt2 wht d=48 (H_12 x H_4, matrix supplied)", "gpt2", "wht", 48, 4, None, "supplied"),
        ("llama wht d=80 (H_20 x H_4, matrix supplied)", "llama", "wht", 80, 4, 2, "supplied"),
        ("gpt2 wht d=64 (Sylvester supplied)", "gpt2", "wht", 64, 4, None, "supplied"),
    ]
    for i, (label, fam, proj, d, H, KV, had) in enumerate(cases):
        sub = os.path.join(root, f"case{i}")
        os.makedirs(sub, exist_ok=True)
        config = tm.make_config(fam, 53, d, 2, H, proj, kv_heads=KV, ff=3 * d // 2 if fam == "llama" else None, max_pos=16)
        hm = tm.hadamard_matrix(d) if had else None
        ckpt, case = _make_case(sub, config, seed=100 + i, hadamard=hm)
        path = os.path.join(sub, "case.safetensors")
        tm.save_safetensors(path, case)
        run(label, ckpt, path, EXIT_OK)

        if i in (1, 4, 7):  # corruptions on a few representative cases
            name = next(n for n in case if n.startswith("grad.") and ("scale" in n or "c_attn.weight" in n or "k_proj" in n))
            bad = OrderedDict(case)
            g = bad[name].copy()
            g.flat[g.size // 2] += 1e-3 * float(np.abs(g).max())
            bad[name] = g
            p = os.path.join(sub, "bad_grad.safetensors")
            tm.save_safetensors(p, bad)
            run(label + f": {name} perturbed by 1e-3 of its max", ckpt, p, EXIT_MISMATCH)

            bad = OrderedDict(case)
            bad["logits"] = case["logits"].copy()
            bad["logits"][0, -1, 0] += 1e-3 * float(np.abs(case["logits"]).max())
            p = os.path.join(sub, "bad_logits.safetensors")
            tm.save_safetensors(p, bad)
            run(label + ": one logit perturbed", ckpt, p, EXIT_MISMATCH)

            bad = OrderedDict((k, v) for k, v in case.items() if k != name)
            p = os.path.join(sub, "missing_grad.safetensors")
            tm.save_safetensors(p, bad)
            run(label + f": {name} missing", ckpt, p, EXIT_MISMATCH)

            bad = OrderedDict(case)
            bad["grad.model.layers.0.self_attn.o_proj.weight"] = np.zeros((d, d), np.float32)
            p = os.path.join(sub, "extra_grad.safetensors")
            tm.save_safetensors(p, bad)
            run(label + ": extra grad tensor", ckpt, p, EXIT_MISMATCH)

            bad = OrderedDict(case)
            bad["hadamard"] = -tm.hadamard_matrix(d).astype(np.float32)
            p = os.path.join(sub, "bad_hadamard.safetensors")
            tm.save_safetensors(p, bad)
            run(label + ": wrong hadamard (negated Sylvester)", ckpt, p, EXIT_MISMATCH)

            bad = OrderedDict(case)
            bad["tokens"] = case["tokens"].astype(np.int64)
            p = os.path.join(sub, "bad_dtype.safetensors")
            tm.save_safetensors(p, bad)
            run(label + ": tokens stored as I64", ckpt, p, EXIT_USAGE)

            bad = OrderedDict((k, v) for k, v in case.items() if k != "targets")
            p = os.path.join(sub, "no_targets.safetensors")
            tm.save_safetensors(p, bad)
            run(label + ": targets missing", ckpt, p, EXIT_USAGE)

            p = os.path.join(sub, "truncated.safetensors")
            with open(path, "rb") as f:
                blob = f.read()
            with open(p, "wb") as f:
                f.write(blob[: len(blob) - 100])
            run(label + ": truncated file", ckpt, p, EXIT_USAGE)

        if i == 9:  # d not a power of two without the matrix
            bad = OrderedDict((k, v) for k, v in case.items() if k != "hadamard")
            p = os.path.join(sub, "no_hadamard.safetensors")
            tm.save_safetensors(p, bad)
            run(label + ": hadamard missing", ckpt, p, EXIT_USAGE)
            bad = OrderedDict(case)
            hbad = case["hadamard"].copy()
            hbad[[0, 1]] = hbad[[1, 0]]  # still +-1 and orthogonal, no longer symmetric
            bad["hadamard"] = hbad
            p = os.path.join(sub, "asym_hadamard.safetensors")
            tm.save_safetensors(p, bad)
            run(label + ": row-swapped (non-symmetric) hadamard", ckpt, p, EXIT_MISMATCH)

    # float32 reference, as the C++ side would get with --dtype float32
    sub = os.path.join(root, "case1")
    run("llama wht, --dtype float32 reference", os.path.join(sub, "ckpt"),
        os.path.join(sub, "case.safetensors"), EXIT_OK, dtype="float32")

    # safetensors round trip of every dtype the writer knows
    rt = OrderedDict()
    for dt in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_):
        rt[np.dtype(dt).name] = (np.arange(6).reshape(2, 3) % 2 == 1) if dt is np.bool_ else np.arange(6, dtype=dt).reshape(2, 3)
    rt["scalar"] = np.asarray(3.5, dtype=np.float32)
    rt["empty"] = np.zeros((0, 4), dtype=np.float32)
    p = os.path.join(root, "roundtrip.safetensors")
    tm.save_safetensors(p, rt, metadata={"format": "pt"})
    back, dts, meta = tm.load_safetensors(p, with_dtypes=True)
    ok = list(back) == list(rt) and all(
        back[k].dtype == rt[k].dtype and back[k].shape == rt[k].shape and np.array_equal(back[k], rt[k]) for k in rt
    ) and meta == {"format": "pt"}
    with open(p, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    ok = ok and n % 8 == 0
    results.append(ok)
    print(f"[{'ok' if ok else 'BAD'}] safetensors round trip ({len(rt)} tensors, dtypes {sorted(set(dts.values()))})")

    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
    npass = sum(results)
    print(f"self-test: {npass}/{len(results)} {'passed' if npass == len(results) else 'FAILED'}")
    return EXIT_OK if npass == len(results) else EXIT_MISMATCH


def main(argv=None) -> int:
    try:
        a = _parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        print("usage: compare_with_torch.py CHECKPOINT_DIR CASE.safetensors [--dtype float64|float32] "
              "[--logits-rtol 1e-5] [--grad-rtol 1e-4] | --self-test", file=sys.stderr)
        return EXIT_USAGE
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if a.self_test:
        return self_test(a.keep)
    try:
        return compare(a.checkpoint, a.case, a.dtype, a.logits_rtol, a.grad_rtol, a.quiet)
    except tm.FormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

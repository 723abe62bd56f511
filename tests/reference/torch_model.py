"""Independent PyTorch implementation of whtlm's two model families.

Used as the reference that the C++ model's logits and gradients are checked
against (tests/reference/compare_with_torch.py) and as the PyTorch side of the
training-throughput comparison (bench/torch_train.py).

Families (Hugging Face tensor names, see the checkpoint format in the project docs):
  * llama: RMSNorm, rotate-half RoPE, grouped-query causal attention, SwiGLU MLP,
    untied lm_head (a tied head is accepted too).
  * gpt2: LayerNorm, learned positions, fused c_attn (Conv1D, weight [in, out]),
    gelu_new MLP, head tied to wte.
Attention output projection ("attn_output_projection" in config.json):
  * dense:    y = a W_o^T (llama o_proj) / y = a W + b (gpt2 c_proj)
  * wht:      y = scale * (a H / sqrt(d)) + bias, H the +-1 Hadamard matrix
              (Sylvester, natural order, for d a power of two; otherwise supplied)
  * identity: y = a

Nothing here depends on anything but numpy and torch (1.13 is enough).  The
safetensors reader and writer are written from the format's definition: an 8-byte
little-endian header length N, N bytes of JSON, then the raw tensor bytes.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------


class FormatError(Exception):
    """A file or field does not have the expected format (message names which)."""


_ST_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # converted to float32 after reading
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

_NP_TO_ST = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64",
    np.dtype("uint32"): "U32",
    np.dtype("uint16"): "U16",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def load_safetensors(path: str, with_dtypes: bool = False):
    """Reads a .safetensors file.

    Returns an OrderedDict name -> numpy array (own memory, native byte order), and
    with with_dtypes=True also a dict name -> safetensors dtype string and the
    "__metadata__" dict (or None).  Raises FormatError naming the file and field.
    """
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise FormatError(f"{path}: cannot read: {e.strerror}") from None
    if len(blob) < 8:
        raise FormatError(f"{path}: {len(blob)} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise FormatError(f"{path}: header length {n} exceeds the file size {len(blob)}")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header is not a JSON object")
    data = memoryview(blob)[8 + n :]
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not isinstance(metadata, dict):
        raise FormatError(f"{path}: __metadata__ is not an object")
    tensors: "OrderedDict[str, np.ndarray]" = OrderedDict()
    dtypes: Dict[str, str] = {}
    for name, info in header.items():
        where = f"{path}: tensor '{name}'"
        if not isinstance(info, dict):
            raise FormatError(f"{where}: entry is not an object")
        dt = info.get("dtype")
        if dt not in _ST_DTYPES:
            raise FormatError(f"{where}: unknown dtype {dt!r}")
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise FormatError(f"{where}: bad shape {shape!r}")
        offs = info.get("data_offsets")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
        ):
            raise FormatError(f"{where}: bad data_offsets {offs!r}")
        b, e = offs
        npdt = _ST_DTYPES[dt]
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= b <= e <= len(data)):
            raise FormatError(
                f"{where}: data_offsets [{b}, {e}] outside the data section of {len(data)} bytes"
            )
        if e - b != numel * npdt.itemsize:
            raise FormatError(
                f"{where}: data_offsets span {e - b} bytes but shape {shape} of {dt} "
                f"needs {numel * npdt.itemsize}"
            )
        arr = np.frombuffer(data[b:e], dtype=npdt).reshape(shape)
        if dt == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = np.array(arr, dtype=arr.dtype.newbyteorder("="), copy=True)
        dtypes[name] = dt
    if with_dtypes:
        return tensors, dtypes, metadata
    return tensors


def save_safetensors(
    path: str, tensors: Dict[str, np.ndarray], metadata: Optional[Dict[str, str]] = None
) -> None:
    """Writes name -> numpy array (or torch tensor) as .safetensors, little-endian,
    tensors in the given order, header padded with spaces to a multiple of 8."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks: List[bytes] = []
    offset = 0
    for name, arr in tensors.items():
        if isinstance(arr, torch.Tensor):
            arr = arr.detach().cpu().numpy()
        arr = np.asarray(arr)
        if arr.dtype not in _NP_TO_ST:
            raise ValueError(f"save_safetensors: tensor '{name}' has unsupported dtype {arr.dtype}")
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": _NP_TO_ST[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for c in chunks:
            f.write(c)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------

PROJECTIONS = ("dense", "wht", "identity")


@dataclass
class Spec:
    family: str  # "llama" | "gpt2"
    vocab: int
    d: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ff: int
    max_pos: int
    eps: float
    rope_theta: float
    proj: str
    tie: bool
    # llama: Hugging Face's attention_bias, a bias on q, k, v and o alike (how a folded
    # wht model's beta travels in the Hugging Face layout).
    attn_bias: bool = False


def _need(config: dict, key: str, where: str, kind=int):
    if key not in config:
        raise FormatError(f"{where}: missing field '{key}'")
    v = config[key]
    if kind is int:
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise FormatError(f"{where}: field '{key}' must be a positive integer, got {v!r}")
    elif kind is float:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise FormatError(f"{where}: field '{key}' must be a number, got {v!r}")
        v = float(v)
    return v


def config_family(config: dict, where: str = "config.json") -> str:
    mt = config.get("model_type")
    archs = config.get("architectures") or []
    if mt == "llama" or "LlamaForCausalLM" in archs:
        return "llama"
    if mt == "gpt2" or "GPT2LMHeadModel" in archs:
        return "gpt2"
    raise FormatError(f"{where}: unknown model_type {mt!r} / architectures {archs!r}")


def spec_from_config(config: dict, where: str = "config.json") -> Spec:
    family = config_family(config, where)
    proj = config.get("attn_output_projection", "dense")
    if proj not in PROJECTIONS:
        raise FormatError(f"{where}: attn_output_projection {proj!r} is not one of {PROJECTIONS}")
    if family == "llama":
        d = _need(config, "hidden_size", where)
        heads = _need(config, "num_attention_heads", where)
        kv = config.get("num_key_value_heads", heads)
        if not isinstance(kv, int) or kv <= 0 or heads % kv:
            raise FormatError(
                f"{where}: num_key_value_heads {kv!r} must divide num_attention_heads {heads}"
            )
        hd = config.get("head_dim") or d // heads
        act = config.get("hidden_act", "silu")
        if act != "silu":
            raise FormatError(f"{where}: hidden_act {act!r} is not supported (silu only)")
        if config.get("mlp_bias"):
            raise FormatError(f"{where}: mlp_bias is not supported")
        attn_bias = bool(config.get("attention_bias", False))
        if attn_bias and proj != "dense":
            raise FormatError(f"{where}: attention_bias needs a dense o_proj")
        spec = Spec(
            family="llama",
            vocab=_need(config, "vocab_size", where),
            d=d,
            layers=_need(config, "num_hidden_layers", where),
            heads=heads,
            kv_heads=kv,
            head_dim=hd,
            ff=_need(config, "intermediate_size", where),
            max_pos=config.get("max_position_embeddings") or 0,
            eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(config.get("rope_theta", 10000.0)),
            proj=proj,
            tie=bool(config.get("tie_word_embeddings", False)),
            attn_bias=attn_bias,
        )
        if hd % 2:
            raise FormatError(f"{where}: head_dim {hd} must be even for RoPE")
    else:
        d = _need(config, "n_embd", where)
        heads = _need(config, "n_head", where)
        if d % heads:
            raise FormatError(f"{where}: n_embd {d} is not a multiple of n_head {heads}")
        act = config.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise FormatError(f"{where}: activation_function {act!r} is not supported")
        ff = config.get("n_inner") or 4 * d
        spec = Spec(
            family="gpt2",
            vocab=_need(config, "vocab_size", where),
            d=d,
            layers=_need(config, "n_layer", where),
            heads=heads,
            kv_heads=heads,
            head_dim=d // heads,
            ff=ff,
            max_pos=_need(config, "n_positions", where),
            eps=float(config.get("layer_norm_epsilon", 1e-5)),
            rope_theta=0.0,
            proj=proj,
            tie=bool(config.get("tie_word_embeddings", True)),
        )
    if spec.proj != "dense" and spec.heads * spec.head_dim != spec.d:
        raise FormatError(
            f"{where}: attn_output_projection {spec.proj!r} needs heads*head_dim "
            f"({spec.heads}*{spec.head_dim}) == hidden size {spec.d}"
        )
    return spec


def make_config(
    family: str,
    vocab: int,
    d: int,
    layers: int,
    heads: int,
    proj: str = "dense",
    kv_heads: Optional[int] = None,
    ff: Optional[int] = None,
    max_pos: int = 2048,
) -> dict:
    """A config.json dict in the project's format."""
    if family == "llama":
        if ff is None:
            # LLaMA's rule: 2/3 of 4d, rounded up to a multiple of 256.
            ff = ((8 * d // 3 + 255) // 256) * 256
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": vocab,
            "hidden_size": d,
            "intermediate_size": ff,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads or heads,
            "head_dim": d // heads,
            "max_position_embeddings": max_pos,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "torch_dtype": "float32",
            "attn_output_projection": proj,
        }
    if family == "gpt2":
        if kv_heads not in (None, heads):
            raise ValueError("gpt2 has no grouped-query attention")
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": vocab,
            "n_embd": d,
            "n_layer": layers,
            "n_head": heads,
            "n_positions": max_pos,
            "n_ctx": max_pos,
            "n_inner": ff,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "tie_word_embeddings": True,
            "attn_output_projection": proj,
        }
    raise ValueError(f"unknown family {family!r}")


def parameter_shapes(spec: Spec) -> "OrderedDict[str, Tuple[int, ...]]":
    """Every parameter tensor of the model, by Hugging Face name, with its shape."""
    s: "OrderedDict[str, Tuple[int, ...]]" = OrderedDict()
    d, ff, V = spec.d, spec.ff, spec.vocab
    if spec.family == "llama":
        qd, kvd = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
        s["model.embed_tokens.weight"] = (V, d)
        for i in range(spec.layers):
            p = f"model.layers.{i}."
            s[p + "input_layernorm.weight"] = (d,)
            s[p + "self_attn.q_proj.weight"] = (qd, d)
            s[p + "self_attn.k_proj.weight"] = (kvd, d)
            s[p + "self_attn.v_proj.weight"] = (kvd, d)
            if spec.attn_bias:
                s[p + "self_attn.q_proj.bias"] = (qd,)
                s[p + "self_attn.k_proj.bias"] = (kvd,)
                s[p + "self_attn.v_proj.bias"] = (kvd,)
                s[p + "self_attn.o_proj.bias"] = (d,)
            if spec.proj == "dense":
                s[p + "self_attn.o_proj.weight"] = (d, qd)
            elif spec.proj == "wht":
                s[p + "self_attn.o_proj.scale"] = (d,)
                s[p + "self_attn.o_proj.bias"] = (d,)
            s[p + "post_attention_layernorm.weight"] = (d,)
            s[p + "mlp.gate_proj.weight"] = (ff, d)
            s[p + "mlp.up_proj.weight"] = (ff, d)
            s[p + "mlp.down_proj.weight"] = (d, ff)
        s["model.norm.weight"] = (d,)
        if not spec.tie:
            s["lm_head.weight"] = (V, d)
    else:
        s["transformer.wte.weight"] = (V, d)
        s["transformer.wpe.weight"] = (spec.max_pos, d)
        for i in range(spec.layers):
            p = f"transformer.h.{i}."
            s[p + "ln_1.weight"] = (d,)
            s[p + "ln_1.bias"] = (d,)
            s[p + "attn.c_attn.weight"] = (d, 3 * d)
            s[p + "attn.c_attn.bias"] = (3 * d,)
            if spec.proj == "dense":
                s[p + "attn.c_proj.weight"] = (d, d)
                s[p + "attn.c_proj.bias"] = (d,)
            elif spec.proj == "wht":
                s[p + "attn.c_proj.scale"] = (d,)
                s[p + "attn.c_proj.bias"] = (d,)
            s[p + "ln_2.weight"] = (d,)
            s[p + "ln_2.bias"] = (d,)
            s[p + "mlp.c_fc.weight"] = (d, ff)
            s[p + "mlp.c_fc.bias"] = (ff,)
            s[p + "mlp.c_proj.weight"] = (ff, d)
            s[p + "mlp.c_proj.bias"] = (d,)
        s["transformer.ln_f.weight"] = (d,)
        s["transformer.ln_f.bias"] = (d,)
        if not spec.tie:
            s["lm_head.weight"] = (V, d)
    return s


def load_checkpoint(path: str) -> Tuple[dict, "OrderedDict[str, np.ndarray]"]:
    """Reads CHECKPOINT_DIR/config.json and CHECKPOINT_DIR/model.safetensors."""
    cfg_path = os.path.join(path, "config.json")
    try:
        with open(cfg_path, "r", encoding="utf-8") as f:
            config = json.load(f)
    except OSError as e:
        raise FormatError(f"{cfg_path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise FormatError(f"{cfg_path}: not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise FormatError(f"{cfg_path}: not a JSON object")
    weights = load_safetensors(os.path.join(path, "model.safetensors"))
    return config, weights


def save_checkpoint(path: str, config: dict, weights: Dict[str, np.ndarray]) -> None:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_safetensors(
        os.path.join(path, "model.safetensors"),
        OrderedDict((k, np.asarray(v, dtype=np.float32)) for k, v in weights.items()),
    )


# ----------------------------------------------------------------------------------
# Hadamard matrices
# ----------------------------------------------------------------------------------


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def sylvester_hadamard(n: int) -> np.ndarray:
    """The n x n Sylvester matrix, natural order: H[i, j] = (-1)^popcount(i & j)."""
    if not is_power_of_two(n):
        raise ValueError(f"sylvester_hadamard: {n} is not a power of two")
    h = np.ones((1, 1), dtype=np.float64)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _quadratic_character(q: int) -> np.ndarray:
    chi = -np.ones(q, dtype=np.int64)
    chi[0] = 0
    for x in range(1, q):
        chi[(x * x) % q] = 1
    return chi


def _paley_order(k: int) -> np.ndarray:
    """A symmetric Hadamard matrix of order k in {12, 20, 28}, following the
    construction documented in docs/hadamard.md (Paley I made symmetric for q = 11,
    19; Paley II for q = 13).  Used for d = k * 2^m when no matrix is supplied."""
    if k in (12, 20):
        q = k - 1
        chi = _quadratic_character(q)
        h = np.zeros((k, k), dtype=np.int64)
        h[0, 0] = -1
        h[0, 1:] = 1
        h[1:, 0] = 1
        for i in range(q):
            for j in range(q):
                jj = (-j) % q  # core column j is column -j of I + Q
                h[i + 1, j + 1] = (1 if i == jj else 0) + chi[(jj - i) % q]
    elif k == 28:
        q = 13
        chi = _quadratic_character(q)
        c = q + 1
        conf = np.zeros((c, c), dtype=np.int64)
        conf[0, 1:] = 1
        conf[1:, 0] = 1
        for i in range(q):
            for j in range(q):
                conf[i + 1, j + 1] = chi[(j - i) % q]
        zero = np.array([[1, -1], [-1, -1]])
        one = np.array([[1, 1], [1, -1]])
        h = np.block([[zero if e == 0 else e * one for e in row] for row in conf])
    else:
        raise ValueError(f"no Hadamard construction of order {k}")
    if not (np.array_equal(h, h.T) and np.array_equal(h @ h.T, k * np.eye(k, dtype=np.int64))):
        raise AssertionError(f"construction of order {k} is not a symmetric Hadamard matrix")
    return h.astype(np.float64)


def hadamard_matrix_or_none(n: int) -> Optional[np.ndarray]:
    try:
        return hadamard_matrix(n)
    except ValueError:
        return None


def hadamard_matrix(n: int) -> np.ndarray:
    """Sylvester for powers of two, H_K (x) Sylvester for n = K * 2^m, K in 12/20/28."""
    if is_power_of_two(n):
        return sylvester_hadamard(n)
    for k in (12, 20, 28):
        if n % k == 0 and is_power_of_two(n // k):
            return np.kron(_paley_order(k), sylvester_hadamard(n // k))
    raise ValueError(f"no Hadamard matrix of order {n} is known here (need 2^m or 12/20/28 * 2^m)")


# ----------------------------------------------------------------------------------
# fast Walsh-Hadamard for the benchmark path
# ----------------------------------------------------------------------------------


def _fwht_butterfly(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Sylvester transform of the last dimension (a power of two) by
    log2(n) butterfly stages; natural order."""
    n = x.shape[-1]
    lead = x.shape[:-1]
    y = x.reshape(-1, n)
    h = 1
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)
        a, b = y[:, :, 0], y[:, :, 1]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return y.reshape(*lead, n)


class _KronHadamard(torch.autograd.Function):
    """y = x (A (x) B) for symmetric factors A [p,p], B [q,q]: two small matmuls.
    The backward of a symmetric linear map is the same map."""

    @staticmethod
    def forward(ctx, x, a, b):
        ctx.save_for_backward(a, b)
        return _kron_apply(x, a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _kron_apply(g, a, b), None, None


def _kron_apply(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows of x viewed as p x q matrices X (index i*q + j): returns A X B as rows.
    Both steps are single 2-D GEMMs; the middle transpose is one copy.  This beat
    a broadcast matmul, einsum and a 2-D GEMM on a [N*q, p] transpose (see
    bench/torch_train.py for the figures)."""
    p, q = a.shape[0], b.shape[0]
    a, b = a.to(x.dtype), b.to(x.dtype)  # a custom Function sees no autocast: match x
    lead = x.shape[:-1]
    n = x.numel() // (p * q)
    y = torch.mm(x.reshape(n * p, q), b)  # mixes the low index (B symmetric)
    y = y.view(n, p, q).transpose(0, 1).reshape(p, n * q)
    y = torch.mm(a, y)  # mixes the high index
    return y.view(p, n, q).transpose(0, 1).reshape(*lead, p * q)


# ----------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------


class TransformerLM:
    """Parameters are plain leaf tensors in self.params, keyed by Hugging Face name.

    fast=False (reference): every step is written out with elementary torch ops in
    the given dtype (float64 by default).
    fast=True (benchmark): fused torch kernels where they exist (F.linear,
    F.layer_norm, baddbmm with an additive causal mask, F.cross_entropy) and the
    Hadamard projection as chosen by wht_impl:
      "matmul"  a @ (H / sqrt(d)) with the dense +-1 matrix,
      "kron"    H = H_p (x) H_q with p, q ~ sqrt(d): two small matmuls per row,
      "butterfly" log2(d) stages of view/stack (powers of two only).
    """

    def __init__(
        self,
        config: dict,
        params: Dict[str, torch.Tensor],
        hadamard: Optional[np.ndarray] = None,
        fast: bool = False,
        wht_impl: str = "kron",
    ):
        self.config = config
        self.spec = spec_from_config(config)
        self.params = params
        self.fast = fast
        first = next(iter(params.values()))
        self.dtype = first.dtype
        self.device = first.device
        sp = self.spec
        self.wht_impl = wht_impl
        self._had = None
        if sp.proj == "wht":
            d = sp.d
            hm = hadamard if hadamard is not None else hadamard_matrix(d)
            hm = np.asarray(hm, dtype=np.float64)
            if hm.shape != (d, d):
                raise FormatError(f"hadamard matrix has shape {hm.shape}, expected {(d, d)}")
            self._had_np = hm
            self._had = torch.tensor(hm / math.sqrt(d), dtype=self.dtype, device=self.device)
            own = hadamard is None or np.array_equal(hm, hadamard_matrix_or_none(d))
            if fast and wht_impl == "kron":
                self._kron = self._kron_factors(d) if own else None
                if self._kron is None:
                    self.wht_impl = "matmul"
            elif fast and wht_impl == "butterfly" and not (own and is_power_of_two(d)):
                self.wht_impl = "matmul"
        self._rope_cache: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._mask_cache: Dict[int, torch.Tensor] = {}

    def _kron_factors(self, d: int):
        """Factors our own H_d = A (x) B with A, B of order ~sqrt(d)."""
        if is_power_of_two(d):
            k = d.bit_length() - 1
            p = 1 << (k // 2)
            a, b = sylvester_hadamard(p), sylvester_hadamard(d // p)
        else:
            best = None
            for k in (12, 20, 28):
                if d % k == 0 and is_power_of_two(d // k):
                    m = d // k
                    r = 1
                    while r <= m:  # A = H_k (x) H_r, B = H_{m/r}; balance k*r + m/r
                        cost = k * r + m // r
                        if best is None or cost < best[0]:
                            best = (cost, k, r, m)
                        r *= 2
                    break
            if best is None:
                return None
            _, k, r, m = best
            a = np.kron(_paley_order(k), sylvester_hadamard(r))
            b = sylvester_hadamard(m // r)
        s = math.sqrt(d)
        ta = torch.tensor(a / s, dtype=self.dtype, device=self.device)
        tb = torch.tensor(b, dtype=self.dtype, device=self.device)
        return ta, tb

    # -- parameters -----------------------------------------------------------------

    def parameters(self) -> List[torch.Tensor]:
        return list(self.params.values())

    def named_parameters(self) -> Iterable[Tuple[str, torch.Tensor]]:
        return self.params.items()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    # -- pieces ---------------------------------------------------------------------

    def _rope(self, T: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if T not in self._rope_cache:
            hd = self.spec.head_dim
            j = torch.arange(hd // 2, dtype=torch.float64)
            inv_freq = self.spec.rope_theta ** (-2.0 * j / hd)
            pos = torch.arange(T, dtype=torch.float64)
            ang = pos[:, None] * inv_freq[None, :]  # [T, hd/2]
            ang = torch.cat((ang, ang), dim=-1)  # [T, hd]
            self._rope_cache[T] = (
                torch.cos(ang).to(self.dtype).to(self.device),
                torch.sin(ang).to(self.dtype).to(self.device),
            )
        return self._rope_cache[T]

    def _causal_mask(self, T: int) -> torch.Tensor:
        if T not in self._mask_cache:
            m = torch.full((T, T), float("-inf"), dtype=self.dtype, device=self.device)
            self._mask_cache[T] = torch.triu(m, diagonal=1)
        return self._mask_cache[T]

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def _linear(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor] = None):
        """HF Linear: y = x W^T (+ b), W [out, in]."""
        if self.fast:
            return F.linear(x, w, b)
        y = torch.matmul(x, w.t())
        return y if b is None else y + b

    def _conv1d(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
        """HF Conv1D: y = x W + b, W [in, out]."""
        if self.fast:
            return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])
        return torch.matmul(x, w) + b

    def _rmsnorm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ms = torch.mean(x * x, dim=-1, keepdim=True)
        return x * torch.rsqrt(ms + self.spec.eps) * w

    def _layernorm(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.fast:
            return F.layer_norm(x, (x.shape[-1],), w, b, self.spec.eps)
        mu = torch.mean(x, dim=-1, keepdim=True)
        xc = x - mu
        var = torch.mean(xc * xc, dim=-1, keepdim=True)
        return xc * torch.rsqrt(var + self.spec.eps) * w + b

    def _gelu_new(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast:
            return F.gelu(x, approximate="tanh")
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + torch.tanh(c * (x + 0.044715 * x * x * x)))

    def _silu(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast:
            return F.silu(x)
        return x * torch.sigmoid(x)

    def _attention(self, q, k, v):
        """q [B,H,T,hd], k/v [B,KV,T,hd] -> [B,T,H*hd], causal, scale 1/sqrt(hd)."""
        B, H, T, hd = q.shape
        KV = k.shape[1]
        if KV != H:
            g = H // KV  # query head h reads kv head h // g
            k = k[:, :, None].expand(B, KV, g, T, hd).reshape(B, H, T, hd)
            v = v[:, :, None].expand(B, KV, g, T, hd).reshape(B, H, T, hd)
        scale = 1.0 / math.sqrt(hd)
        if self.fast:
            qf = q.reshape(B * H, T, hd)
            kf = k.reshape(B * H, T, hd)
            vf = v.reshape(B * H, T, hd)
            s = torch.baddbmm(self._causal_mask(T), qf, kf.transpose(1, 2), alpha=scale)
            p = torch.softmax(s, dim=-1)
            o = torch.bmm(p, vf).view(B, H, T, hd)
        else:
            s = torch.matmul(q, k.transpose(-1, -2)) * scale
            causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
            s = s.masked_fill(~causal, float("-inf"))
            s = s - s.amax(dim=-1, keepdim=True)
            e = torch.exp(s)
            p = e / e.sum(dim=-1, keepdim=True)
            o = torch.matmul(p, v)
        return o.transpose(1, 2).reshape(B, T, H * hd)

    def _wht(self, a: torch.Tensor) -> torch.Tensor:
        """a H / sqrt(d) (H symmetric)."""
        if not self.fast or self.wht_impl == "matmul":
            return torch.matmul(a, self._had)
        if self.wht_impl == "kron":
            return _KronHadamard.apply(a, *self._kron)
        return _fwht_butterfly(a) * (1.0 / math.sqrt(a.shape[-1]))

    def _out_proj(self, a: torch.Tensor, prefix: str) -> torch.Tensor:
        P = self.params
        proj = self.spec.proj
        if proj == "identity":
            return a
        if proj == "wht":
            t = self._wht(a)
            return t * P[prefix + ".scale"] + P[prefix + ".bias"]
        if self.spec.family == "llama":
            return self._linear(a, P[prefix + ".weight"], self._bias(prefix))
        return self._conv1d(a, P[prefix + ".weight"], P[prefix + ".bias"])

    # -- forward --------------------------------------------------------------------

    def _bias(self, prefix: str) -> Optional[torch.Tensor]:
        """llama's attention_bias: the bias of q/k/v/o_proj, else None."""
        return self.params[prefix + ".bias"] if self.spec.attn_bias else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] (int64) -> logits [B, T, V]."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B, T], got {tuple(tokens.shape)}")
        tokens = tokens.to(torch.int64)
        if self.spec.family == "llama":
            return self._forward_llama(tokens)
        return self._forward_gpt2(tokens)

    __call__ = forward

    def _forward_llama(self, tokens: torch.Tensor) -> torch.Tensor:
        sp, P = self.spec, self.params
        B, T = tokens.shape
        H, KV, hd = sp.heads, sp.kv_heads, sp.head_dim
        cos, sin = self._rope(T)
        x = P["model.embed_tokens.weight"][tokens]
        for i in range(sp.layers):
            p = f"model.layers.{i}."
            h = self._rmsnorm(x, P[p + "input_layernorm.weight"])
            q = self._linear(h, P[p + "self_attn.q_proj.weight"], self._bias(p + "self_attn.q_proj"))
            q = q.view(B, T, H, hd).transpose(1, 2)
            k = self._linear(h, P[p + "self_attn.k_proj.weight"], self._bias(p + "self_attn.k_proj"))
            k = k.view(B, T, KV, hd).transpose(1, 2)
            v = self._linear(h, P[p + "self_attn.v_proj.weight"], self._bias(p + "self_attn.v_proj"))
            v = v.view(B, T, KV, hd).transpose(1, 2)
            q = q * cos + self._rotate_half(q) * sin
            k = k * cos + self._rotate_half(k) * sin
            a = self._attention(q, k, v)
            x = x + self._out_proj(a, p + "self_attn.o_proj")
            h = self._rmsnorm(x, P[p + "post_attention_layernorm.weight"])
            g = self._silu(self._linear(h, P[p + "mlp.gate_proj.weight"]))
            u = self._linear(h, P[p + "mlp.up_proj.weight"])
            x = x + self._linear(g * u, P[p + "mlp.down_proj.weight"])
        x = self._rmsnorm(x, P["model.norm.weight"])
        head = P["model.embed_tokens.weight"] if sp.tie else P["lm_head.weight"]
        return self._linear(x, head)

    def _forward_gpt2(self, tokens: torch.Tensor) -> torch.Tensor:
        sp, P = self.spec, self.params
        B, T = tokens.shape
        d, H, hd = sp.d, sp.heads, sp.head_dim
        if T > sp.max_pos:
            raise ValueError(f"sequence length {T} exceeds n_positions {sp.max_pos}")
        x = P["transformer.wte.weight"][tokens] + P["transformer.wpe.weight"][:T]
        for i in range(sp.layers):
            p = f"transformer.h.{i}."
            h = self._layernorm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
            qkv = self._conv1d(h, P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"])
            q, k, v = qkv.split(d, dim=-1)
            q = q.reshape(B, T, H, hd).transpose(1, 2)
            k = k.reshape(B, T, H, hd).transpose(1, 2)
            v = v.reshape(B, T, H, hd).transpose(1, 2)
            a = self._attention(q, k, v)
            x = x + self._out_proj(a, p + "attn.c_proj")
            h = self._layernorm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
            m = self._gelu_new(self._conv1d(h, P[p + "mlp.c_fc.weight"], P[p + "mlp.c_fc.bias"]))
            x = x + self._conv1d(m, P[p + "mlp.c_proj.weight"], P[p + "mlp.c_proj.bias"])
        x = self._layernorm(x, P["transformer.ln_f.weight"], P["transformer.ln_f.bias"])
        head = P["transformer.wte.weight"] if sp.tie else P["lm_head.weight"]
        return self._linear(x, head)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross entropy over all B*T positions."""
        V = logits.shape[-1]
        flat = logits.reshape(-1, V)
        t = targets.reshape(-1).to(torch.int64)
        if self.fast:
            return F.cross_entropy(flat, t)
        mx = flat.amax(dim=-1, keepdim=True)
        lse = torch.log(torch.exp(flat - mx).sum(dim=-1)) + mx.squeeze(-1)
        picked = flat.gather(1, t[:, None]).squeeze(1)
        return (lse - picked).mean()

    def forward_loss(self, tokens: torch.Tensor, targets: torch.Tensor):
        logits = self.forward(tokens)
        return logits, self.loss(logits, targets)


# ----------------------------------------------------------------------------------
# construction
# ----------------------------------------------------------------------------------


def check_weights(spec: Spec, weights: Dict[str, np.ndarray], where: str = "model.safetensors"):
    """Raises FormatError unless weights has exactly the expected tensors and shapes."""
    expected = parameter_shapes(spec)
    missing = [n for n in expected if n not in weights]
    extra = [n for n in weights if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
        if extra:
            parts.append("unexpected " + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
        raise FormatError(f"{where}: tensor set does not match the config: " + "; ".join(parts))
    for n, shp in expected.items():
        if tuple(weights[n].shape) != shp:
            raise FormatError(f"{where}: tensor '{n}' has shape {list(weights[n].shape)}, expected {list(shp)}")


def build_model(
    config: dict,
    weights: Dict[str, np.ndarray],
    dtype: torch.dtype = torch.float64,
    hadamard: Optional[np.ndarray] = None,
    fast: bool = False,
    wht_impl: str = "kron",
    requires_grad: bool = True,
) -> TransformerLM:
    spec = spec_from_config(config)
    check_weights(spec, weights)
    params: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for name in parameter_shapes(spec):
        t = torch.tensor(np.asarray(weights[name]), dtype=dtype)
        t.requires_grad_(requires_grad)
        params[name] = t
    return TransformerLM(config, params, hadamard=hadamard, fast=fast, wht_impl=wht_impl)


def from_checkpoint(path: str, dtype: torch.dtype = torch.float64, **kw) -> TransformerLM:
    config, weights = load_checkpoint(path)
    return build_model(config, weights, dtype=dtype, **kw)


def random_weights(config: dict, seed: int = 0, jitter: bool = False) -> "OrderedDict[str, np.ndarray]":
    """GPT-2 style initialisation: N(0, 0.02) matrices (output matrices of each
    residual branch scaled by 1/sqrt(2L)), norms at 1, biases at 0, WHT scale 1 and
    bias 0.  jitter=True perturbs the norms, biases and scales as well, so that tests
    exercise every term (a model straight from initialisation hides some bugs)."""
    spec = spec_from_config(config)
    rng = np.random.default_rng(seed)
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    resid = 0.02 / math.sqrt(2 * spec.layers)
    for name, shape in parameter_shapes(spec).items():
        if len(shape) == 2:
            std = resid if name.endswith(("o_proj.weight", "down_proj.weight", "c_proj.weight")) else 0.02
            if name.endswith("wpe.weight"):
                std = 0.01
            w = rng.normal(0.0, std, size=shape)
        elif name.endswith(("layernorm.weight", "norm.weight", "ln_1.weight", "ln_2.weight", "ln_f.weight", ".scale")):
            w = np.ones(shape)
            if jitter:
                w = w + rng.normal(0.0, 0.2, size=shape)
        else:  # biases
            w = np.zeros(shape)
            if jitter:
                w = rng.normal(0.0, 0.05, size=shape)
        out[name] = w.astype(np.float32)
    if jitter:
        # larger matrices give logits with some spread, so the softmax is not flat
        for name in out:
            if len(out[name].shape) == 2:
                out[name] = (out[name] * 5.0).astype(np.float32)
    return out


def random_model(
    config: dict,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    fast: bool = True,
    wht_impl: str = "kron",
    jitter: bool = False,
) -> TransformerLM:
    """A randomly initialised model for a config (no checkpoint needed)."""
    return build_model(config, random_weights(config, seed, jitter), dtype=dtype, fast=fast, wht_impl=wht_impl)

#!/usr/bin/python3
"""Writes a GGUF v3 file of random weights with the shape of a whtlm preset, for timing
llama.cpp (llama-bench) side by side with `whtlm bench infer` on the same shape.

Only the shape matters here: weights are N(0, 0.02), norms 1, biases 0; the tokenizer is
a dummy byte-level BPE vocabulary ("gpt2" model, no merges) of distinct strings. Matrix
types f32, bf16 or q8_0 (1-D tensors stay f32), written as ggml lays them out: a weight
[out][in] row-major has GGUF dims [in, out]; Q8_0 blocks of 32 along `in`, each an fp16
scale amax / 127 and 32 int8 values roundf(x * 127 / amax). The file layout follows
ggml's reader: tensor data in the order of the infos, each padded to 32 bytes.

Usage: /usr/bin/python3 bench/gguf_random.py --family llama --layers 6 --d 512 --heads 8
       --ff 1536 --vocab 8192 --context 512 --type q8_0 --out small-q8_0.gguf
"""
import argparse
import struct
import sys

import numpy as np

ALIGN = 32
T_UINT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, T_INT32 = 4, 6, 7, 8, 9, 5
GGML_F32, GGML_Q8_0, GGML_BF16 = 0, 8, 30
FILE_TYPE = {"f32": 0, "q8_0": 7, "bf16": 32}


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == T_UINT32:
        return out + struct.pack("<I", value)
    if vtype == T_FLOAT32:
        return out + struct.pack("<f", value)
    if vtype == T_BOOL:
        return out + struct.pack("<B", 1 if value else 0)
    if vtype == T_STRING:
        return out + gguf_string(value)
    raise ValueError(vtype)


def kv_array(key, etype, values):
    out = gguf_string(key) + struct.pack("<IIQ", T_ARRAY, etype, len(values))
    if etype == T_STRING:
        return out + b"".join(gguf_string(v) for v in values)
    if etype == T_INT32:
        return out + np.asarray(values, dtype="<i4").tobytes()
    raise ValueError(etype)


def to_bf16(w):
    u = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r.tobytes()


def to_q8_0(w):
    out_rows, n = w.shape
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(out_rows, n // 32, 32)
    amax = np.abs(x).max(axis=2, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = x * idv
    qs = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int8)  # roundf
    blocks = np.empty((out_rows, n // 32, 34), dtype=np.uint8)
    blocks[:, :, 0:2] = d.astype(np.float16).view(np.uint8).reshape(out_rows, n // 32, 2)
    blocks[:, :, 2:] = qs.view(np.uint8)
    return blocks.tobytes()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=["llama", "gpt2"], required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--kv-heads", type=int, default=0, help="default: --heads")
    p.add_argument("--ff", type=int, required=True)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--context", type=int, required=True)
    p.add_argument("--type", choices=["f32", "bf16", "q8_0"], required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    kvh = a.kv_heads or a.heads
    if a.d % a.heads or a.heads % kvh:
        sys.exit("gguf_random: --d must be a multiple of --heads, --heads of --kv-heads")
    if a.type == "q8_0" and (a.d % 32 or a.ff % 32):
        sys.exit("gguf_random: q8_0 needs --d and --ff to be multiples of 32")
    hd = a.d // a.heads
    rng = np.random.default_rng(a.seed)
    tensors = []  # (name, dims in ggml order, ggml type, bytes)

    def vec(name, n, value):
        tensors.append((name, [n], GGML_F32, np.full(n, value, dtype="<f4").tobytes()))

    def mat(name, out_rows, inp, matrix_type=True):
        w = rng.normal(0.0, 0.02, size=(out_rows, inp)).astype(np.float32)
        t = a.type if matrix_type else "f32"
        if t == "f32":
            tensors.append((name, [inp, out_rows], GGML_F32, w.astype("<f4").tobytes()))
        elif t == "bf16":
            tensors.append((name, [inp, out_rows], GGML_BF16, to_bf16(w)))
        else:
            tensors.append((name, [inp, out_rows], GGML_Q8_0, to_q8_0(w)))

    f = a.family
    # The token table is read a row at a time (get_rows): f32 as whtlm keeps it.
    mat("token_embd.weight", a.vocab, a.d, matrix_type=False)
    if f == "gpt2":
        mat("position_embd.weight", a.context, a.d, matrix_type=False)
    for layer in range(a.layers):
        b = f"blk.{layer}."
        vec(b + "attn_norm.weight", a.d, 1.0)
        if f == "gpt2":
            vec(b + "attn_norm.bias", a.d, 0.0)
            mat(b + "attn_qkv.weight", a.d + 2 * kvh * hd, a.d)
            vec(b + "attn_qkv.bias", a.d + 2 * kvh * hd, 0.0)
        else:
            mat(b + "attn_q.weight", a.d, a.d)
            mat(b + "attn_k.weight", kvh * hd, a.d)
            mat(b + "attn_v.weight", kvh * hd, a.d)
        mat(b + "attn_output.weight", a.d, a.d)
        if f == "gpt2":  # whtlm's dense llama has no output bias
            vec(b + "attn_output.bias", a.d, 0.0)
        vec(b + "ffn_norm.weight", a.d, 1.0)
        if f == "gpt2":
            vec(b + "ffn_norm.bias", a.d, 0.0)
            mat(b + "ffn_up.weight", a.ff, a.d)
            vec(b + "ffn_up.bias", a.ff, 0.0)
            mat(b + "ffn_down.weight", a.d, a.ff)
            vec(b + "ffn_down.bias", a.d, 0.0)
        else:
            mat(b + "ffn_gate.weight", a.ff, a.d)
            mat(b + "ffn_up.weight", a.ff, a.d)
            mat(b + "ffn_down.weight", a.d, a.ff)
    vec("output_norm.weight", a.d, 1.0)
    if f == "gpt2":
        vec("output_norm.bias", a.d, 0.0)
    else:  # whtlm's llama head is untied
        mat("output.weight", a.vocab, a.d)

    meta = [
        kv("general.architecture", T_STRING, f),
        kv("general.name", T_STRING, f"whtlm random {f} {a.layers}x{a.d}"),
        kv("general.file_type", T_UINT32, FILE_TYPE[a.type]),
        kv("general.quantization_version", T_UINT32, 2),
        kv(f"{f}.context_length", T_UINT32, a.context),
        kv(f"{f}.embedding_length", T_UINT32, a.d),
        kv(f"{f}.block_count", T_UINT32, a.layers),
        kv(f"{f}.feed_forward_length", T_UINT32, a.ff),
        kv(f"{f}.attention.head_count", T_UINT32, a.heads),
        kv(f"{f}.attention.head_count_kv", T_UINT32, kvh),
    ]
    if f == "llama":
        meta += [
            kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, 1e-5),
            kv("llama.rope.freq_base", T_FLOAT32, 10000.0),
            kv("llama.rope.dimension_count", T_UINT32, hd),
            kv("llama.vocab_size", T_UINT32, a.vocab),
        ]
    else:
        meta.append(kv("gpt2.attention.layer_norm_epsilon", T_FLOAT32, 1e-5))
    meta += [
        kv("tokenizer.ggml.model", T_STRING, "gpt2"),
        kv("tokenizer.ggml.pre", T_STRING, "default"),
        kv_array("tokenizer.ggml.tokens", T_STRING, [f"<t{i}>" for i in range(a.vocab)]),
        kv_array("tokenizer.ggml.token_type", T_INT32, [1] * a.vocab),
        kv_array("tokenizer.ggml.merges", T_STRING, []),
        kv("tokenizer.ggml.bos_token_id", T_UINT32, 0),
        kv("tokenizer.ggml.eos_token_id", T_UINT32, 0),
    ]

    def pad(n):
        return (n + ALIGN - 1) // ALIGN * ALIGN

    infos, offset = [], 0
    for name, dims, gtype, data in tensors:
        infos.append(
            gguf_string(name)
            + struct.pack("<I", len(dims))
            + b"".join(struct.pack("<Q", x) for x in dims)
            + struct.pack("<IQ", gtype, offset)
        )
        offset += pad(len(data))
    header = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(meta))
    head = header + b"".join(meta) + b"".join(infos)
    with open(a.out, "wb") as fh:
        fh.write(head)
        fh.write(b"\0" * (pad(len(head)) - len(head)))
        for _, _, _, data in tensors:
            fh.write(data)
            fh.write(b"\0" * (pad(len(data)) - len(data)))
    print(f"gguf_random: wrote {a.out}: {f}, {len(tensors)} tensors, {a.type}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Checks a Hugging Face folder written by `whtlm export --to hf` with the independent
PyTorch reference (torch_model.py), built from the exported files as a plain dense model.

Usage: check_hf_export.py EXPORT_DIR CASE.safetensors [--rtol 1e-5]

EXPORT_DIR: config.json, model.safetensors or model.safetensors.index.json with its
shards (every shard's tensors listed in weight_map, no tensor in two shards), and
safetensors metadata {"format": "pt"} in each file. CASE.safetensors (tests/model_dump)
holds the tokens and whtlm's logits of the source model (wht, identity or dense).
The reference runs in float64 on the exported weights; the logits must agree within
--rtol relative to the largest logit. A config.json carrying attn_output_projection
(whtlm's own layout) is refused: the point is that the files are plain dense ones.
Exit 0 on agreement, 1 on a mismatch, 2 on a format error.
"""

import json
import os
import sys
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import torch_model as tm  # noqa: E402


def load_export(folder):
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    index = os.path.join(folder, "model.safetensors.index.json")
    files = []
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        files = sorted(set(weight_map.values()))
    else:
        weight_map = None
        files = ["model.safetensors"]
    weights = OrderedDict()
    for name in files:
        w, _, meta = tm.load_safetensors(os.path.join(folder, name), with_dtypes=True)
        if not meta or meta.get("format") != "pt":
            raise tm.FormatError(f"{name}: metadata format is {meta!r}, expected 'pt'")
        for k, v in w.items():
            if k in weights:
                raise tm.FormatError(f"{name}: tensor {k} is in two shards")
            if weight_map is not None and weight_map.get(k) != name:
                raise tm.FormatError(f"{name}: tensor {k} is not mapped to this shard")
            weights[k] = v
    if weight_map is not None and set(weight_map) != set(weights):
        raise tm.FormatError("weight_map and the shards list different tensors")
    return config, weights, len(files)


def main(argv):
    folder, case_path = argv[0], argv[1]
    rtol = float(argv[3]) if len(argv) > 3 and argv[2] == "--rtol" else 1e-5
    try:
        config, weights, nfiles = load_export(folder)
        if "attn_output_projection" in config:
            raise tm.FormatError("config.json names attn_output_projection: not a plain dense layout")
        spec = tm.spec_from_config(config)
        tm.check_weights(spec, weights, folder)
        case = tm.load_safetensors(case_path)
    except tm.FormatError as e:
        print(f"check_hf_export.py: {e}")
        return 2
    params = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in weights.items()}
    model = tm.TransformerLM(config, params)
    tokens = torch.tensor(np.asarray(case["tokens"], dtype=np.int64))
    with torch.no_grad():
        ref = model(tokens).numpy()
    ours = np.asarray(case["logits"], dtype=np.float64).reshape(ref.shape)
    err = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
    ok = err <= rtol
    fold = config.get("whtlm_fold", {}).get("projection", "none")
    print(f"{'ok' if ok else 'FAIL'}: {spec.family} dense (folded: {fold}) from {nfiles} file(s), "
          f"attention_bias {spec.attn_bias}: logits relative error {err:.2e} (bound {rtol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

# Independent float32 reimplementation of the Hugging Face transformers decoder forward pass
# (llama / mistral / qwen2 / qwen3), written from the HF modelling semantics, not copied; it is
# the reference that remora's tests compare against.  Run with /usr/bin/python3 (needs torch).
#   hf_reference.py forward  --model DIR --ids "1,2,3;4,5" --out FILE.safetensors
#   hf_reference.py generate --model DIR --ids "1,2,3;4,5" --max-new-tokens N
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_py  # noqa: E402

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")


def load_model(model_dir):
    """Return (config dict, {name: float32 tensor}) for a single-file or sharded checkpoint."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") not in SUPPORTED:
        raise SystemExit(f"unsupported model_type {cfg.get('model_type')!r}")
    if cfg.get("hidden_act", "silu") != "silu":
        raise SystemExit(f"unsupported hidden_act {cfg['hidden_act']!r}")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for fn in files:
        for k, v in safetensors_py.load(os.path.join(model_dir, fn)).items():
            weights[k] = v.to(torch.float32)
    return cfg, weights


def rope_inv_freq(cfg, dim):
    """inv_freq as HF's rope init functions compute it (default / linear / llama3)."""
    theta = float(cfg.get("rope_theta") or 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / rs["factor"]
    if kind == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old_ctx = rs["original_max_position_embeddings"]
        lo_wavelen, hi_wavelen = old_ctx / lo, old_ctx / hi
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > lo_wavelen, inv / factor, inv)  # low freqs: fully scaled
        smooth = (old_ctx / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < hi_wavelen) * ~(wavelen > lo_wavelen)
        return torch.where(medium, smoothed, inv_l)
    raise SystemExit(f"unsupported rope_type {kind!r}")


def rms_norm(x, w, eps):
    x = x.float()
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def layer_window(cfg, i):
    """Sliding-window size for layer i, or None for full causal attention."""
    mt = cfg["model_type"]
    if mt == "mistral":
        return cfg.get("sliding_window", 4096)  # MistralConfig's default when the key is absent
    if mt in ("qwen2", "qwen3") and cfg.get("use_sliding_window", False):
        types = cfg.get("layer_types")
        sliding = (types[i] == "sliding_attention") if types else i >= cfg.get("max_window_layers", 28)
        return cfg.get("sliding_window") if sliding else None
    return None


def linear(W, name, x, bias):
    return torch.nn.functional.linear(x, W[name + ".weight"], W[name + ".bias"] if bias else None)


def forward(cfg, W, ids):
    """Logits [T, vocab] (float32) for one unpadded sequence of token ids."""
    mt = cfg["model_type"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_heads
    hd = cfg.get("head_dim") or cfg["hidden_size"] // n_heads
    eps = cfg.get("rms_norm_eps", 1e-6)
    # qwen2: q/k/v always biased, o never; mistral's modelling code has no attention biases at all
    qkv_bias = mt == "qwen2" or (mt != "mistral" and cfg.get("attention_bias", False))
    o_bias = mt not in ("qwen2", "mistral") and cfg.get("attention_bias", False)
    mlp_bias = mt == "llama" and cfg.get("mlp_bias", False)
    T = len(ids)
    pos = torch.arange(T, dtype=torch.float32)
    freqs = torch.outer(pos, rope_inv_freq(cfg, hd))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [T, hd]
    qi = torch.arange(T).unsqueeze(1)
    kj = torch.arange(T).unsqueeze(0)

    x = W["model.embed_tokens.weight"][torch.tensor(ids, dtype=torch.long)]  # [T, H]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(W, p + "self_attn.q_proj", h, qkv_bias).view(T, n_heads, hd)
        k = linear(W, p + "self_attn.k_proj", h, qkv_bias).view(T, n_kv, hd)
        v = linear(W, p + "self_attn.v_proj", h, qkv_bias).view(T, n_kv, hd)
        if mt == "qwen3":  # per-head RMSNorm before RoPE
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [heads, T, hd]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = n_heads // n_kv  # GQA: kv head j serves query heads j*rep .. j*rep+rep-1
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        allowed = kj <= qi
        win = layer_window(cfg, i)
        if win is not None:
            allowed = allowed & (kj > qi - win)
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1)
        attn = (probs @ v).transpose(0, 1).reshape(T, n_heads * hd)
        x = x + linear(W, p + "self_attn.o_proj", attn, o_bias)
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        gate = linear(W, p + "mlp.gate_proj", h, mlp_bias)
        up = linear(W, p + "mlp.up_proj", h, mlp_bias)
        x = x + linear(W, p + "mlp.down_proj", torch.nn.functional.silu(gate) * up, mlp_bias)
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else W["lm_head.weight"]
    return x @ head.t()


def parse_ids(s):
    rows = [[int(t) for t in r.split(",") if t.strip()] for r in s.split(";")]
    if any(not r for r in rows):
        raise SystemExit("--ids: every row needs at least one token")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description="HF-equivalent float32 reference forward/generate")
    ap.add_argument("mode", choices=("forward", "generate"))
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help='rows separated by ";", ids by ","')
    ap.add_argument("--out", help="output .safetensors (forward)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    a = ap.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    cfg, W = load_model(a.model)
    rows = parse_ids(a.ids)
    with torch.no_grad():
        if a.mode == "forward":
            if not a.out:
                raise SystemExit("forward needs --out")
            safetensors_py.save({f"logits.{r}": forward(cfg, W, ids) for r, ids in enumerate(rows)}, a.out)
            return
        eos = cfg.get("eos_token_id")
        eos = set(eos if isinstance(eos, list) else ([] if eos is None else [eos]))
        for ids in rows:
            seq, new = list(ids), []
            for _ in range(a.max_new_tokens):  # no KV cache: recompute the whole sequence
                tok = int(torch.argmax(forward(cfg, W, seq)[-1]))
                seq.append(tok)
                new.append(tok)
                if tok in eos:
                    break
            print(",".join(map(str, new)))


if __name__ == "__main__":
    main()

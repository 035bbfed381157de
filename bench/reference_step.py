#!/usr/bin/env python3
# Idiomatic PyTorch reference of remora's training step and decode loop, timed for bench/train_speed.sh.
#
# The same work as remora's step, written the way a PyTorch user would (transformers' eager Llama, a
# batched mixture-of-LoRAs layer): bf16 base, fp32 master adapter factors cast to bf16 in each forward,
# one masked GEMM pair for the experts, the M routed samples stacked in the batch, fp32 softmax over
# full T x T scores, cross-entropy over full fp32 logits, AdamW. Prints one JSON line.
#   python3 reference_step.py train --method remix --hidden 512 --layers 4 --ffn 1408 --heads 8
#       --kv-heads 4 --vocab 8192 --tokens 256 --batch 2 --samples 4 --steps 10
#   python3 reference_step.py decode --config MODEL/config.json --batch 1 --new-tokens 32
import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F

BF16 = torch.bfloat16


def rms_norm(x, weight, eps=1e-5):  # transformers' LlamaRMSNorm
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rope(x, cos, sin):  # x [B, H, T, Dh]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
    return x * cos + rotated * sin


class Adapted(torch.nn.Module):
    """A frozen bf16 projection plus n LoRAs of rank r in one [n r] GEMM pair, gated per rank."""

    def __init__(self, d_in, d_out, experts, rank, scale):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(d_out, d_in, dtype=BF16) / math.sqrt(d_in), requires_grad=False)
        self.plain = experts == 0  # the base model alone (decode)
        self.lora_A = torch.nn.Parameter(torch.empty(experts * rank, d_in).uniform_(-d_in ** -0.5, d_in ** -0.5))
        self.lora_B = torch.nn.Parameter(torch.randn(d_out, experts * rank) * 1e-3)
        self.rank, self.scale = rank, scale

    def forward(self, x, gate):  # gate [N, n] per expert or [N, n r] per rank (SMoRA), None for LoRA
        if self.plain:
            return F.linear(x, self.weight)
        hidden = F.linear(x, self.lora_A.to(x.dtype))
        if gate is not None:
            per_rank = gate if gate.shape[-1] == hidden.shape[-1] else gate.repeat_interleave(self.rank, -1)
            hidden = hidden * per_rank.view(*hidden.shape[:-1], -1).to(x.dtype)
        return F.linear(x, self.weight) + F.linear(hidden, self.lora_B.to(x.dtype)) * self.scale


class Router(torch.nn.Module):
    """One routing decision per block input (ReMix, top-k) or per projection (SMoRA)."""

    def __init__(self, method, d_in, experts, k, omega):
        super().__init__()
        self.method, self.k, self.omega = method, k, omega
        self.weight = torch.nn.Parameter(torch.randn(experts, d_in) * 0.01)
        self.register_buffer("bias", torch.zeros(experts))
        self.log_prob = self.aux = None

    def forward(self, x):
        x = x.reshape(-1, x.shape[-1]).float()
        if self.method == "remix":  # Gumbel top-k sample, Plackett-Luce log-probability, constant weights
            log_q = F.log_softmax(F.linear(x.detach(), self.weight), -1)
            gumbel = -torch.log(-torch.log(torch.rand_like(log_q).clamp(1e-20, 1 - 1e-7)))
            picked = (log_q.detach() + gumbel).topk(self.k, -1).indices
            remaining, log_prob = log_q, 0
            for j in range(self.k):
                pick = picked[:, j:j + 1]
                log_prob = log_prob + remaining.gather(-1, pick).squeeze(-1) - remaining.logsumexp(-1)
                remaining = remaining.scatter(-1, pick, float("-inf"))
            self.log_prob = log_prob
            return torch.zeros_like(log_q).scatter(-1, picked, self.omega)
        if self.method == "topk":  # softmax, top-k renormalised, Switch balance loss
            probs = F.softmax(F.linear(x, self.weight), -1)
            top, picked = probs.topk(self.k, -1)
            chosen = torch.zeros_like(probs).scatter(-1, picked, 1.0).mean(0)
            self.aux = 1e-3 * probs.shape[-1] * (chosen * probs.mean(0)).sum()
            return torch.zeros_like(probs).scatter(-1, picked, top / top.sum(-1, keepdim=True))
        # SMoRA: sigmoid affinity + loss-free balancing bias, top-k ranks
        scores = torch.sigmoid(F.linear(x, self.weight)) + self.bias
        picked = scores.detach().topk(self.k, -1).indices
        top = scores.gather(-1, picked)
        with torch.no_grad():
            load = torch.bincount(picked.flatten(), minlength=scores.shape[-1]).float()
            self.bias.add_(1e-5 * torch.sign(load.mean() - load))
        return torch.zeros_like(scores).scatter(-1, picked, self.k * top / top.sum(-1, keepdim=True))


class Layer(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        d, dh = a.hidden, a.hidden // a.heads
        per_expert = a.method in ("remix", "topk")
        experts, rank = (a.experts, a.r) if per_expert else (0 if a.method == "none" else 1, a.r)
        scale = {"remix": 1.0, "lora": 2.0, "topk": 2.0, "smora": 16.0 / a.k, "none": 0}[a.method]

        def proj(i, o):
            return Adapted(i, o, experts, rank, scale)
        self.q, self.k, self.v = proj(d, a.heads * dh), proj(d, a.kv_heads * dh), proj(d, a.kv_heads * dh)
        self.o, self.gate, self.up, self.down = proj(a.heads * dh, d), proj(d, a.ffn), proj(d, a.ffn), proj(a.ffn, d)
        self.norm1 = torch.nn.Parameter(torch.ones(d, dtype=BF16), requires_grad=False)
        self.norm2 = torch.nn.Parameter(torch.ones(d, dtype=BF16), requires_grad=False)
        omega = 2.0 / math.sqrt(a.k * a.r)
        if per_expert:
            self.routers = torch.nn.ModuleList([Router(a.method, d, experts, a.k, omega) for _ in range(2)])
        elif a.method == "smora":
            names = ["q", "k", "v", "o", "gate", "up", "down"]
            self.routers = torch.nn.ModuleDict({n: Router("smora", getattr(self, n).weight.shape[1], a.r, a.k, 0)
                                                for n in names})
        self.method, self.heads, self.kv_heads, self.dh = a.method, a.heads, a.kv_heads, dh

    def smora_gate(self, name, x):
        return self.routers[name](x) if self.method == "smora" else None

    def forward(self, x, cos, sin, mask, cache=None):
        B, T, _ = x.shape
        h = rms_norm(x, self.norm1)
        g = self.routers[0](h) if self.method in ("remix", "topk") else None
        sg = self.smora_gate
        q = self.q(h, g if g is not None else sg("q", h)).view(B, T, self.heads, self.dh).transpose(1, 2)
        k = self.k(h, g if g is not None else sg("k", h)).view(B, T, self.kv_heads, self.dh).transpose(1, 2)
        v = self.v(h, g if g is not None else sg("v", h)).view(B, T, self.kv_heads, self.dh).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if cache is not None:  # transformers' DynamicCache: concatenate the new keys and values
            if cache[0] is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[0], cache[1] = k, v
        groups = self.heads // self.kv_heads  # repeat_kv
        k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + mask
        probs = F.softmax(scores, -1, dtype=torch.float32).to(q.dtype)
        attn = (probs @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o(attn, g if g is not None else sg("o", attn))
        h = rms_norm(x, self.norm2)
        g = self.routers[1](h) if self.method in ("remix", "topk") else None
        gated = F.silu(self.gate(h, g if g is not None else sg("gate", h))) * self.up(h, g if g is not None else sg("up", h))
        return x + self.down(gated, g if g is not None else sg("down", gated))


class Model(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = torch.nn.Parameter(torch.randn(a.vocab, a.hidden, dtype=BF16), requires_grad=False)
        self.layers = torch.nn.ModuleList([Layer(a) for _ in range(a.layers)])
        self.norm = torch.nn.Parameter(torch.ones(a.hidden, dtype=BF16), requires_grad=False)
        self.head = torch.nn.Parameter(torch.randn(a.vocab, a.hidden, dtype=BF16) / math.sqrt(a.hidden),
                                       requires_grad=False)
        dh = a.hidden // a.heads
        self.inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dh, 2).float() / dh))

    def forward(self, ids, past=0, caches=None):
        T = ids.shape[1]
        freqs = torch.outer(torch.arange(past, past + T).float(), self.inv_freq)
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos().to(BF16), emb.sin().to(BF16)
        mask = torch.full((T, past + T), float("-inf")).triu(past + 1).to(BF16)
        x = F.embedding(ids, self.embed)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, None if caches is None else caches[i])
        return F.linear(rms_norm(x, self.norm), self.head).float()  # full fp32 logits


def train(a):
    model = Model(a)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    M = a.samples if a.method == "remix" else 1
    ids = torch.randint(a.vocab, (a.batch, a.tokens))

    def step():
        rows = ids.repeat(M, 1)  # the M routed samples of each input stacked in the batch
        logits = model(rows)
        token_loss = F.cross_entropy(logits[:, :-1].reshape(-1, a.vocab), rows[:, 1:].reshape(-1), reduction="none")
        losses = token_loss.view(M, a.batch, -1).mean(-1)  # [M, B]
        objective = losses.mean()
        for layer in model.layers:
            for router in getattr(layer, "routers", []):
                router = layer.routers[router] if isinstance(router, str) else router
                if router.aux is not None:
                    objective = objective + router.aux
        if a.method == "remix":  # RLOO: leave-one-out advantage times the selections' log-probability
            log_prob = sum(r.log_prob.view(M, a.batch, -1).sum(-1) for layer in model.layers for r in layer.routers)
            advantage = (losses - losses.mean(0, keepdim=True)).detach() * M / (M - 1)
            objective = objective + (advantage * log_prob).mean()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = (time.perf_counter() - start) / a.steps
    return {"input_tokens_per_second": a.batch * a.tokens / seconds, "seconds_per_step": seconds}


@torch.no_grad()
def decode(a):
    config = json.load(open(a.config))
    a.hidden, a.layers, a.ffn = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    a.heads, a.kv_heads, a.vocab = config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]
    a.method = "none"
    model = Model(a).eval()
    prompt = torch.randint(a.vocab, (a.batch, 16))

    def generate():  # greedy decoding with a KV cache, one token per step
        caches = [[None, None] for _ in model.layers]
        next_ids, past = prompt, 0
        for _ in range(a.new_tokens):
            logits = model(next_ids, past, caches)
            past += next_ids.shape[1]
            next_ids = logits[:, -1].argmax(-1, keepdim=True)

    generate()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < a.min_seconds:
        generate()
        calls += 1
    seconds = (time.perf_counter() - start) / calls
    return {"decode_tokens_per_second": a.batch * a.new_tokens / seconds}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "decode"])
    parser.add_argument("--method", default="remix", choices=["remix", "lora", "topk", "smora"])
    for name, default in [("hidden", 512), ("layers", 4), ("ffn", 1408), ("heads", 8), ("kv-heads", 4),
                          ("vocab", 8192), ("tokens", 256), ("batch", 2), ("samples", 4), ("experts", 8),
                          ("k", 2), ("r", 8), ("steps", 10), ("threads", 2), ("new-tokens", 32)]:
        parser.add_argument("--" + name, type=int, default=default)
    parser.add_argument("--config")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    result = train(a) if a.mode == "train" else decode(a)
    result["peak_resident_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()

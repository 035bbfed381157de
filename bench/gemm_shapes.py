#!/usr/bin/env python3
# Single ops of the first train_speed.sh shape (2048 rows: batch 2 x 256 tokens x M 4), timed in PyTorch on
# the same LibTorch: the LM head into a fresh output (the reference's allocator cost), fusions remora
# could make (one GEMM for q/k/v or gate/up, base + adapter through addmm), the two forms of the routers'
# weight gradient, and AdamW over the step's adapter and router parameters. Milliseconds per call.
#   /usr/bin/python3 bench/gemm_shapes.py                       (glibc, as the reference runs)
#   LD_PRELOAD=$(/sbin/ldconfig -p | awk '/libjemalloc.so.2 .*x86-64/ {print $NF; exit}') \
#     MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 /usr/bin/python3 bench/gemm_shapes.py   (remora's allocator)
import time

import torch

torch.set_num_threads(2)
BF16, N = torch.bfloat16, 2048


def ms(f, seconds=0.5):
    """Per call, after 3 calls of warm-up."""
    for _ in range(3):
        f()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        f()
        calls += 1
    return (time.perf_counter() - start) / calls * 1e3


def randn(*shape, dtype=BF16):
    return torch.randn(*shape, dtype=dtype)


def pair(label, first, second):
    print(f"{label:58s} {ms(first):7.2f} {ms(second):7.2f}")


def main():
    print(f"{'':58s} {'ms':>7s} {'ms':>7s}")
    x, head = randn(N, 512), randn(8192, 512)
    pair("LM head [2048,512]x[512,8192]: whole / 256 rows x 8", lambda: x @ head.t(),
         lambda: [x[i:i + 256] @ head.t() for i in range(0, N, 256)])
    q, k, v = randn(512, 512), randn(256, 512), randn(256, 512)
    qkv = torch.cat([q, k, v])
    gq, gk, gv = randn(N, 512), randn(N, 256), randn(N, 256)
    gqkv = torch.cat([gq, gk, gv], 1)
    pair("q/k/v forward: three GEMMs / one", lambda: (x @ q.t(), x @ k.t(), x @ v.t()), lambda: x @ qkv.t())
    pair("q/k/v input gradient: three GEMMs + two adds / one", lambda: gq @ q + gk @ k + gv @ v, lambda: gqkv @ qkv)
    gate, up = randn(1408, 512), randn(1408, 512)
    gate_up = torch.cat([gate, up])
    g_gate, g_up = randn(N, 1408), randn(N, 1408)
    g_gate_up = torch.cat([g_gate, g_up], 1)
    pair("gate/up forward: two GEMMs / one", lambda: (x @ gate.t(), x @ up.t()), lambda: x @ gate_up.t())
    pair("gate/up input gradient: two GEMMs + add / one", lambda: g_gate @ gate + g_up @ up, lambda: g_gate_up @ gate_up)
    hidden, b = randn(N, 64), randn(512, 64)
    pair("q + adapter (r 64): mm + mm + add / mm + addmm", lambda: x @ q.t() + hidden @ b.t(),
         lambda: torch.addmm(x @ q.t(), hidden, b.t()))
    x32, dy = randn(N, 512, dtype=torch.float32), randn(N, 8, dtype=torch.float32)
    pair("router weight gradient, fp32: (x^T dy)^T / dy^T x", lambda: x32.t().mm(dy).t(), lambda: dy.t().mm(x32))
    # Adapter factors of ReMix n 8, r 8 on the seven projections of 4 layers, and the 8 block routers.
    shapes = []
    for _ in range(4):
        for d_in, d_out in [(512, 512), (512, 256), (512, 256), (512, 512), (512, 1408), (512, 1408), (1408, 512)]:
            shapes += [(64, d_in), (d_out, 64)]
        shapes += [(8, 512), (8, 512)]
    parameters = [torch.randn(*shape, requires_grad=True) for shape in shapes]
    for p in parameters:
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, foreach=False)
    count = sum(p.numel() for p in parameters)
    print(f"{f'AdamW step, one tensor at a time ({count / 1e6:.2f}M parameters)':58s} {ms(optimizer.step):7.2f}")


if __name__ == "__main__":
    main()

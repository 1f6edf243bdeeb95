#!/usr/bin/env python3
"""Peer figures for gpugate's kernels: the same workloads through PyTorch/CUDA on the same GPU.

Run on the GPU machine (its python3 has PyTorch). Prints one JSON object: name -> rate.
Timed with CUDA events, warm-up first, median of the repetitions. Sizes follow the arguments, so
gpugate and the peer can be run on identical shapes in one call; compare.py pairs the two.
Copied from the team's shared tools (../shared/tools/peer_bench.py) so the comparison is part of
the project; the only change is that the output carries its arguments and versions.
"""
import argparse, json, statistics
import torch


def median_ms(fn, reps, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(); fn(); end.record(); torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--copy-mib", type=int, default=1024)
    p.add_argument("--gemm-n", type=int, default=4096)
    p.add_argument("--rows", type=int, default=16384)
    p.add_argument("--cols", type=int, default=8192)
    p.add_argument("--reps", type=int, default=30)
    a = p.parse_args()
    out = {}
    n = a.copy_mib * 1024 * 1024 // 4
    x = torch.rand(n, device="cuda"); y = torch.empty_like(x)
    out["copy_GBps"] = 2 * n * 4 / median_ms(lambda: y.copy_(x), a.reps) / 1e6
    out["reduce_sum_GBps"] = n * 4 / median_ms(lambda: x.sum(), a.reps) / 1e6
    kb = torch.randint(0, 2**31, (n,), device="cuda", dtype=torch.int32)
    kd = torch.randint(0, 2**31, (n,), device="cuda", dtype=torch.int32)
    out["xor_GBps"] = 3 * n * 4 / median_ms(lambda: torch.bitwise_xor(kd, kb, out=kd), a.reps) / 1e6
    N = a.gemm_n
    A = torch.rand(N, N, device="cuda"); B = torch.rand(N, N, device="cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    out[f"sgemm{N}_fp32_TFLOPs"] = 2 * N**3 / median_ms(lambda: A @ B, a.reps) / 1e9
    Ah, Bh = A.half(), B.half()
    out[f"hgemm{N}_fp16_TFLOPs"] = 2 * N**3 / median_ms(lambda: Ah @ Bh, a.reps) / 1e9
    S = torch.rand(a.rows, a.cols, device="cuda")
    out["softmax_GBps"] = 2 * S.numel() * 4 / median_ms(lambda: torch.softmax(S, dim=-1), a.reps) / 1e6
    ln = torch.nn.LayerNorm(a.cols, device="cuda")
    with torch.no_grad():
        out["layernorm_GBps"] = 2 * S.numel() * 4 / median_ms(lambda: ln(S), a.reps) / 1e6
    for dt, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        q = torch.rand(8, 16, 4096, 64, device="cuda", dtype=dt)
        ms = median_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q), a.reps)
        out[f"sdpa_{name}_TFLOPs"] = 4 * 8 * 16 * 4096 * 4096 * 64 / ms / 1e9
    # The arguments travel with the figures, so compare.py pairs only identical shapes.
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "cuda": torch.version.cuda, "args": vars(a),
                      **{k: round(v, 2) for k, v in out.items()}}, indent=1))


if __name__ == "__main__":
    main()

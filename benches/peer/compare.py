#!/usr/bin/env python3
"""gpugate beside its peer: a Markdown table of each kernel's rate, PyTorch/cuBLAS's on the same
shape, their ratio and the target it is held to (issue 14).

    python3 benches/peer/compare.py --report default.json --peer peer-4096.json --peer peer-8192.json

`--report` is a gpugate JSON report (`gpugate run --suite default --json F`, or `--format json`);
`--peer` is what peer_bench.py printed, run in the same call on the same GPU. A pair is made only
where the gpugate instance has exactly the shape the peer measured (its arguments are in its
output), and only from a verified row. Exit 0 with the table when at least one pair was made; exit
1 naming what was missing when none was (nothing compared is not a result); exit 2 on bad input,
naming the file and field.
"""
import argparse
import json
import sys

# peer figure -> (gpugate kernel, its params from the peer's args, gpugate rate per peer unit,
# target ratio, peer workload). gpugate reports GB/s and GFLOP/s; the peer GB/s and TFLOP/s.
def pairs(args):
    n = args["copy_mib"] * 1024 * 1024 // 4
    g = args["gemm_n"]
    rows, cols = args["rows"], args["cols"]
    return {
        "copy_GBps": ("copy", {"n": n}, 1.0, 1.00, f"torch copy_, {args['copy_mib']} MiB"),
        "reduce_sum_GBps": ("reduce_sum", {"n": n}, 1.0, 1.00, "torch.sum"),
        "xor_GBps": ("xor_transform", {"n": n}, 1.0, 0.95, "torch.bitwise_xor, int32, r+r+w"),
        f"sgemm{g}_fp32_TFLOPs": ("sgemm", {"m": g, "n": g, "k": g}, 1e3, 0.80,
                                  f"cuBLAS fp32 {g}³, TF32 off"),
        f"hgemm{g}_fp16_TFLOPs": ("hgemm_coop", {"m": g, "n": g, "k": g}, 1e3, 0.40,
                                  f"cuBLAS fp16 {g}³"),
        "softmax_GBps": ("softmax", {"rows": rows, "cols": cols}, 1.0, 1.30,
                         f"torch.softmax {rows}×{cols}"),
        "layernorm_GBps": ("layernorm", {"rows": rows, "cols": cols}, 1.0, 1.30,
                           f"torch LayerNorm {rows}×{cols}"),
        # peer_bench's SDPA shape is fixed: batch 8, heads 16, seq 4096, head dim 64.
        "sdpa_fp32_TFLOPs": ("attention", {"batch": 8, "heads": 16, "seq": 4096, "causal": 0},
                             1e3, 0.50, "SDPA fp32 8×16×4096×64"),
    }


def fail(code, message):
    print(f"compare.py: {message}", file=sys.stderr)
    sys.exit(code)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(2, f"{path}: {e}")


def key(kernel, params):
    inner = ",".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{kernel}[{inner}]"


def gpugate_rows(path):
    doc = load(path)
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        fail(2, f"{path}: field `rows`: expected a list (is this a gpugate JSON report?)")
    found = {}
    for i, row in enumerate(rows):
        try:
            rate = row["rate"]  # null where the timing was not a number: nothing to pair
            if row["verification"]["ok"] and isinstance(rate, (int, float)) and rate > 0:
                found[key(row["kernel"], row["params"])] = (float(rate), doc)
        except (KeyError, TypeError, ValueError) as e:
            fail(2, f"{path}: field `rows[{i}]`: {e!r}")
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", action="append", required=True, help="gpugate JSON report")
    p.add_argument("--peer", action="append", required=True, help="peer_bench.py output")
    a = p.parse_args()

    ours = {}
    device = None
    for path in a.report:
        for k, (rate, doc) in gpugate_rows(path).items():
            ours[k] = rate
            device = device or (doc.get("fingerprint") or {}).get("name")

    lines = [
        "| kernel (gpugate key) | peer workload | target | gpugate | peer | ratio | meets |",
        "|---|---|---|---|---|---|---|",
    ]
    missing = []
    compared = 0
    seen = set()
    peer_devices = set()
    for path in a.peer:
        peer = load(path)
        if not isinstance(peer, dict):
            fail(2, f"{path}: expected a JSON object (peer_bench.py's output)")
        args = peer.get("args")
        if not isinstance(args, dict):
            fail(2, f"{path}: field `args`: missing (run benches/peer/peer_bench.py, which prints it)")
        peer_devices.add(peer.get("device", "?"))
        try:
            table = pairs(args)
        except (KeyError, TypeError) as e:
            fail(2, f"{path}: field `args`: {e!r}")
        for metric, (kernel, params, scale, target, workload) in table.items():
            if metric not in peer:
                continue
            k = key(kernel, params)
            if k in seen:  # the same shape in two peer files: the first pairs
                continue
            seen.add(k)
            unit = "TFLOP/s" if scale == 1e3 else "GB/s"
            if k not in ours:
                missing.append(f"{k} (for {metric} in {path})")
                continue
            mine = ours[k] / scale
            theirs = peer[metric]
            if isinstance(theirs, bool) or not isinstance(theirs, (int, float)) or not theirs > 0:
                fail(2, f"{path}: field `{metric}`: expected a positive rate, got {theirs!r}")
            ratio = mine / theirs
            compared += 1
            meets = "yes" if ratio >= target else "no"
            lines.append(
                f"| `{k}` | {workload} | ≥ {target:.2f}× | {mine:.1f} {unit} | "
                f"{theirs:.1f} {unit} | {ratio:.2f}× | {meets} |"
            )
    if compared == 0:
        fail(1, "no gpugate row has a peer figure's shape: nothing compared. Missing: "
             + ", ".join(missing))
    print(f"gpugate on {device}; peer on {', '.join(sorted(peer_devices))}\n")
    print("\n".join(lines))
    if missing:
        print("\nNot in the gpugate reports at the peer's shape: " + ", ".join(missing))


if __name__ == "__main__":
    main()

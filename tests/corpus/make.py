#!/usr/bin/env python3
"""Regenerate the bad-baseline corpus: tests/corpus/baselines/<case>.json and manifest.tsv.

Every case is base.json (a valid file for another device: a checked-in baseline cut to its
`copy` kernel and three runs) with one edit. The manifest gives per case the exit code
`gpugate check --baselines <file>` must give and a substring its stderr must hold (the field).
tests/it/bad_input.rs runs them all. Run from the repository root: python3 tests/corpus/make.py
"""
import copy
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "baselines")
BASE = json.load(open(os.path.join(OUT, "base.json")))


def kernel(name, params):
    """Kernel 0 re-labelled as `name[params]` (its statistics stay valid)."""
    def edit(d):
        k = d["kernels"][0]
        k["kernel"] = name
        k["params"] = params
        inner = ",".join(f"{p}={v}" for p, v in sorted(params.items()))
        k["key"] = f"{name}[{inner}]"
    return edit


def setter(path, value):
    def edit(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        d[last] = value
    return edit


def deleter(path):
    def edit(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        del d[last]
    return edit


K0 = ["kernels", 0]
R0 = K0 + ["runs", 0]
U32 = 2**32 - 1

# (case, edit of the document or raw text, exit code, stderr must contain)
CASES = [
    ("valid-other-device", None, 3, "no baseline for device"),
    # The overflows the issue found, one per kernel family, and their neighbours.
    ("overflow-copy-n", kernel("copy", {"n": 2**62}), 2, "kernels[0].params.n: is 4611686018427387904"),
    ("overflow-reduce-n", kernel("reduce_sum", {"n": 2**62}), 2, "kernels[0].params.n"),
    ("overflow-sgemm-1e9", kernel("sgemm", {"m": 10**9, "n": 10**9, "k": 10**9}), 2, "kernels[0].params: sgemm[k=1000000000,m=1000000000,n=1000000000]: 2·m·n·k FLOPs overflows"),
    ("overflow-hgemm-binding", kernel("hgemm", {"m": 2**20, "n": 2**20, "k": 2**20}), 2, "kernels[0].params"),
    ("overflow-attention", kernel("attention", {"batch": 2**31, "heads": 2**31, "seq": 2**31, "causal": 0}), 2, "kernels[0].params: attention["),
    ("overflow-conv2d", kernel("conv2d", {"n": 2**31, "c": 2**31, "k": 2**31, "h": 2**31, "w": 2**31}), 2, "kernels[0].params: conv2d["),
    ("overflow-peak-bandwidth", kernel("peak_bandwidth", {"n": 2**62}), 2, "kernels[0].params.n"),
    # Once an overflow of its FLOPs; now refused by iters' range first (2^16 chain steps at most).
    ("overflow-peak-fma", kernel("peak_fma", {"groups": U32, "iters": U32}), 2, "kernels[0].params.iters"),
    ("overflow-softmax", kernel("softmax", {"rows": U32, "cols": U32}), 2, "rows·cols"),
    ("overflow-layernorm-range", kernel("layernorm", {"rows": 2**40, "cols": 4}), 2, "kernels[0].params.rows"),
    ("overflow-transpose", kernel("transpose", {"rows": 2**16, "cols": 2**16}), 2, "kernels[0].params"),
    ("overflow-lattice-distance", kernel("lattice_distance", {"m": U32, "n": U32, "dim": 1, "size": 2}), 2, "kernels[0].params: lattice_distance["),
    ("overflow-lattice-distance-size", kernel("lattice_distance", {"m": 4, "n": 4, "dim": 8, "size": 2**62}), 2, "kernels[0].params.size"),
    ("overflow-lattice-bfs", kernel("lattice_bfs", {"dim": 16, "size": U32}), 2, "kernels[0].params: lattice_bfs["),
    ("overflow-xor", kernel("xor_transform", {"n": 2**63}), 2, "kernels[0].params.n"),
    ("overflow-triad-u64max", kernel("triad", {"n": 2**64 - 1}), 2, "kernels[0].params.n"),
    ("capacity-copy-2pow34", kernel("copy", {"n": 2**34}), 2, "kernels[0].params.n"),
    ("range-gelu-n3", kernel("gelu", {"n": 3}), 2, "kernels[0].params.n"),
    ("range-copy-not-vec4", kernel("copy", {"n": 6}), 2, "multiple of 4"),
    ("range-attention-causal", kernel("attention", {"batch": 1, "heads": 1, "seq": 64, "causal": 2}), 2, "kernels[0].params.causal"),
    ("range-hgemm-coop-shape", kernel("hgemm_coop", {"m": 33, "n": 32, "k": 16}), 2, "multiples of 32"),
    ("param-n-zero", kernel("copy", {"n": 0}), 2, "kernels[0].params.n: is 0"),
    ("param-unknown", kernel("copy", {"n": 1048576, "zzz": 7}), 2, "kernels[0].params.zzz: unknown parameter"),
    ("param-missing", kernel("sgemm", {"m": 64, "n": 64}), 2, "kernels[0].params.k: missing"),
    ("param-negative", setter(K0 + ["params", "n"], -1), 2, "kernels[0].params.n"),
    ("param-fraction", setter(K0 + ["params", "n"], 1.5), 2, "kernels[0].params.n"),
    ("param-string", setter(K0 + ["params", "n"], "big"), 2, "kernels[0].params.n"),
    ("param-not-a-map", setter(K0 + ["params"], [1, 2]), 2, "kernels[0].params"),
    ("kernel-unknown", kernel("frobnicate", {"n": 4}), 2, "kernels[0].kernel: unknown kernel"),
    ("key-mismatch", setter(K0 + ["key"], "copy[n=4]"), 2, "kernels[0].key"),
    # Duplicate keys: JSON parsers keep the last; gpugate refuses.
    ("duplicate-batch", "dup:batch", 2, "kernels[0].batch: duplicate field `batch`"),
    ("duplicate-param", "dup:params", 2, "kernels[0].params.n: duplicate parameter `n`"),
    ("duplicate-top-level", "dup:device_key", 2, "json: device_key: duplicate field `device_key`"),
    # Implausible statistics.
    ("median-5e-324", setter(K0 + ["median_s"], 5e-324), 2, "kernels[0].median_s"),
    ("median-zero", setter(K0 + ["median_s"], 0.0), 2, "kernels[0].median_s"),
    ("median-negative", setter(K0 + ["median_s"], -0.004), 2, "kernels[0].median_s"),
    ("median-huge", setter(K0 + ["median_s"], 1e300), 2, "kernels[0].median_s"),
    ("median-out-of-f64", "raw:median_s:1e400", 2, "number out of range at line"),
    ("median-nan-literal", "raw:median_s:NaN", 2, "line"),
    ("median-null", setter(K0 + ["median_s"], None), 2, "kernels[0].median_s"),
    ("summary-median-subns", setter(R0 + ["summary", "median_s"], 1e-12), 2, "kernels[0].runs[0].summary.median_s"),
    ("summary-mean-negative", setter(R0 + ["summary", "mean_s"], -0.004), 2, "kernels[0].runs[0].summary.mean_s"),
    ("summary-iqr-negative", setter(R0 + ["summary", "iqr_rel"], -0.1), 2, "kernels[0].runs[0].summary.iqr_rel"),
    # A version-2 file without a kernel's hash would let a rewritten kernel pass as the recorded one.
    ("kernel-hash-null", setter(K0 + ["kernel_hash"], None), 2, "kernels[0].kernel_hash"),
    ("kernel-hash-missing", deleter(K0 + ["kernel_hash"]), 2, "kernels[0].kernel_hash"),
    ("summary-lag1-5", setter(R0 + ["summary", "lag1"], 5.0), 2, "kernels[0].runs[0].summary.lag1"),
    ("summary-n-huge", setter(R0 + ["summary", "n"], 10**18), 2, "kernels[0].runs[0].summary"),
    ("sample-5e-324", setter(R0 + ["samples_s", 3], 5e-324), 2, "kernels[0].runs[0].samples_s[3]"),
    ("sample-zero", setter(R0 + ["samples_s", 0], 0), 2, "kernels[0].runs[0].samples_s[0]"),
    ("sample-huge", setter(R0 + ["samples_s", 1], 1e300), 2, "kernels[0].runs[0].samples_s[1]"),
    ("samples-empty", setter(R0 + ["samples_s"], []), 2, "kernels[0].runs[0]"),
    ("between-run-sd-negative", setter(K0 + ["between_run_rel_sd"], -1.0), 2, "kernels[0].between_run_rel_sd"),
    ("slots-1e18", setter(K0 + ["slots"], 10**18), 2, "kernels[0].slots"),
    ("slots-float-1e18", setter(K0 + ["slots"], 1e18), 2, "kernels[0].slots"),
    ("slots-zero", setter(K0 + ["slots"], 0), 2, "kernels[0].slots"),
    ("batch-zero", setter(K0 + ["batch"], 0), 2, "kernels[0].batch"),
    ("batch-4097", setter(K0 + ["batch"], 4097), 2, "kernels[0].batch"),
    ("batch-1e18", setter(K0 + ["batch"], 10**18), 2, "kernels[0].batch"),
    ("batch-negative", setter(K0 + ["batch"], -1), 2, "kernels[0].batch"),
    ("threshold-negative", setter(["threshold_pct"], -5), 2, "threshold_pct"),
    ("threshold-huge", setter(["threshold_pct"], 1e300), 2, "threshold_pct"),
    ("kernel-threshold-zero", setter(K0 + ["threshold_pct"], 0), 2, "kernels[0].threshold_pct"),
    ("session-out-of-range", setter(R0 + ["session"], 2**32 - 1), 2, "kernels[0].runs[0].session"),
    ("session-negative", setter(R0 + ["session"], -1), 2, "kernels[0].runs[0].session"),
    ("runs-one", lambda d: d["kernels"][0]["runs"].__delitem__(slice(1, None)), 2, "kernels[0].runs: has 1 run"),
    ("runs-missing", deleter(K0 + ["runs"]), 2, "runs"),
    ("kernels-empty", setter(["kernels"], []), 2, "kernels: is empty"),
    ("kernels-object", setter(["kernels"], {}), 2, "kernels"),
    ("schema-99", setter(["schema_version"], 99), 2, "schema_version: is 99"),
    ("schema-string", setter(["schema_version"], "2"), 2, "schema_version"),
    ("schema-missing", deleter(["schema_version"]), 2, "schema_version"),
    ("device-key-mismatch", setter(["device_key"], "something-else"), 2, "device_key"),
    ("recorded-at-bad-date", setter(["recorded_at"], "yesterday"), 2, "recorded_at"),
    ("unknown-field", setter(K0 + ["zzz"], 1), 2, "kernels[0]"),
    ("timing-unknown", setter(K0 + ["timing"], "sundial"), 2, "kernels[0].timing"),
    ("top-level-array", "raw-doc:[]", 2, "schema_version"),
    ("empty-file", "raw-doc:", 2, "not valid JSON"),
    ("truncated", "truncate", 2, "not valid JSON"),
    ("deeply-nested", "raw-doc:" + "[" * 10000, 2, "not valid JSON"),
]


def render(edit):
    doc = copy.deepcopy(BASE)
    if edit is None:
        return json.dumps(doc, indent=2)
    if callable(edit):
        edit(doc)
        return json.dumps(doc, indent=2)
    kind, _, arg = edit.partition(":")
    text = json.dumps(doc, indent=2)
    if kind == "raw-doc":
        return arg
    if kind == "truncate":
        return text[: len(text) // 2]
    if kind == "raw":
        field, _, value = arg.partition(":")
        at = text.index(f'"{field}": ') + len(f'"{field}": ')
        end = at + min(text.index(",", at), text.index("\n", at)) - at
        return text[:at] + value + text[end:]
    if kind == "dup":
        # A second copy of the key right after the first, with a value JSON parsers would keep.
        if arg == "batch":
            return text.replace('"batch": 1,', '"batch": 4096,\n      "batch": 1,', 1)
        if arg == "params":
            return text.replace('"n": 1048576', '"n": 1048576, "n": 4', 1)
        if arg == "device_key":
            return text.replace('"device_key": ', '"device_key": "x",\n  "device_key": ', 1)
    raise SystemExit(f"unknown edit {edit!r}")


def main():
    with open(os.path.join(OUT, "manifest.tsv"), "w") as manifest:
        manifest.write("# case\texit code\tstderr contains (generated by tests/corpus/make.py)\n")
        for name, edit, code, says in CASES:
            text = render(edit)
            if isinstance(edit, str) and edit.startswith("dup:"):
                assert text.count(f'"{edit[4:] if edit != "dup:params" else "n"}"') >= 2, name
            with open(os.path.join(OUT, f"{name}.json"), "w") as f:
                f.write(text)
            manifest.write(f"{name}\t{code}\t{says}\n")


if __name__ == "__main__":
    main()

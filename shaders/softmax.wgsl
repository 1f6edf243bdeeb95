// In bounds: every x/y index is row·cols + c with row < rows, c < cols (loads clamp c, stores test it; rows·cols ≤ 2³², buffers padded to whole vec4s), loops count iterations instead of stepping past u32.
// softmax: row-wise, numerically stable, f32 rows × cols (attention scores, logits).
// One 256-invocation workgroup per row (grid-stride over rows). Rows of at most CAP = 8192
// columns are held in registers: each invocation loads its R = 8 vec4 slots of the row once
// (`main`: coalesced vec4 loads when cols % 4 == 0, so every row starts 16-byte aligned;
// `main_scalar`: coalesced scalar loads otherwise), takes its own max m and e = exp2((x − m)·log2e)
// in place with their sum s, merges the 256 (m, s) pairs in workgroup memory (3 barriers) into
// the row's (M, S), and writes e · exp2((m − M)·log2e) / S: one global read and one write per
// element, one exp2 per element. Longer rows (`main_long`) keep an online (max, sum) per
// invocation over a strided scalar sweep, merge the pairs the same way and re-read the row to write
// exp2((x − M)·log2e) / S.

struct Dims { rows: u32, cols: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// y is scalar: WGSL lets a write to one component of a vector access the whole vector, so
// invocations (and, when cols % 4 != 0, neighbouring rows' workgroups) that share a vec4 would
// race. The vec4 path stores its four components at once.
fn store4(o: u32, v: vec4<f32>) {
    y[o] = v.x;
    y[o + 1u] = v.y;
    y[o + 2u] = v.z;
    y[o + 3u] = v.w;
}

const WG: u32 = 256u;
const R: u32 = 8u; // vec4 register slots per invocation
const CAP: u32 = 8192u; // WG · 4 · R: the longest row held in registers
const L2E: f32 = 1.4426950408889634;
// Below any finite input: the max of an empty slice; exp2 of (LOWEST − real max) is 0.
const LOWEST: f32 = -3.0e38;
const P: u32 = 16u; // partials per second-level invocation (WG = P · P)

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;
var<workgroup> part_m: array<f32, P>;
var<workgroup> part_s: array<f32, P>;
var<workgroup> total: vec2<f32>;

// Of n items dealt round-robin to WG invocations, how many invocation `lid` gets.
fn share(n: u32, lid: u32) -> u32 {
    if lid >= n {
        return 0u;
    }
    return (n - lid - 1u) / WG + 1u;
}

// Which lanes of register slot i hold one of the invocation's first `cnt` elements.
fn lanes(i: u32, cnt: u32) -> vec4<bool> {
    return vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(cnt);
}

// Entries at, at + stride, at + 2·stride, at + 3·stride of red_m / red_s / part_m / part_s.
fn m4(at: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(red_m[at], red_m[at + stride], red_m[at + 2u * stride], red_m[at + 3u * stride]);
}
fn s4(at: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(red_s[at], red_s[at + stride], red_s[at + 2u * stride], red_s[at + 3u * stride]);
}
fn pm4(at: u32) -> vec4<f32> {
    return vec4<f32>(part_m[at], part_m[at + 1u], part_m[at + 2u], part_m[at + 3u]);
}
fn ps4(at: u32) -> vec4<f32> {
    return vec4<f32>(part_s[at], part_s[at + 1u], part_s[at + 2u], part_s[at + 3u]);
}

// Merge 16 (max, sum) pairs given as four vec4s of each: (max, pairwise sum rescaled to it).
fn merge16(m: array<vec4<f32>, 4>, s: array<vec4<f32>, 4>) -> vec2<f32> {
    let mx = max(max(m[0], m[1]), max(m[2], m[3]));
    let mm = max(max(mx.x, mx.y), max(mx.z, mx.w));
    let t = (s[0] * exp2((m[0] - mm) * L2E) + s[1] * exp2((m[1] - mm) * L2E))
        + (s[2] * exp2((m[2] - mm) * L2E) + s[3] * exp2((m[3] - mm) * L2E));
    return vec2<f32>(mm, (t.x + t.y) + (t.z + t.w));
}

// Merge every invocation's (max, sum of exp2((x − max)·log2e)) into the row's (M, S), returned to
// all: invocations 0..16 merge column lid of the 16 × 16 partials, invocation 0 their 16 results
// (pairwise sums, depth 8 as a tree). Three barriers; no trailing one is needed: the next call
// writes red_* only after its callers passed this call's second barrier (level-1 reads done),
// part_* after its own first barrier, and `total` after its second, by which time everyone has
// read this call's total.
fn reduce_max_sum(lid: u32, m: f32, s: f32) -> vec2<f32> {
    red_m[lid] = m;
    red_s[lid] = s;
    workgroupBarrier();
    if lid < P {
        let r = merge16(
            array(m4(lid, P), m4(lid + 4u * P, P), m4(lid + 8u * P, P), m4(lid + 12u * P, P)),
            array(s4(lid, P), s4(lid + 4u * P, P), s4(lid + 8u * P, P), s4(lid + 12u * P, P)),
        );
        part_m[lid] = r.x;
        part_s[lid] = r.y;
    }
    workgroupBarrier();
    if lid == 0u {
        total = merge16(
            array(pm4(0u), pm4(4u), pm4(8u), pm4(12u)),
            array(ps4(0u), ps4(4u), ps4(8u), ps4(12u)),
        );
    }
    workgroupBarrier();
    return total;
}

// An invocation's R = 8 register slots, named rather than an array so that no compiler has to
// unroll a loop to keep them in registers.
struct Slots { s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>, s4: vec4<f32>, s5: vec4<f32>, s6: vec4<f32>, s7: vec4<f32> }

// Slot i's exponentials against the invocation's max m; 0 in lanes past its `cnt` elements and in
// slots no invocation uses (i ≥ slots, a uniform test).
fn ex(v: vec4<f32>, m: f32, i: u32, cnt: u32, slots: u32) -> vec4<f32> {
    if i >= slots {
        return vec4<f32>(0.0);
    }
    return select(vec4<f32>(0.0), exp2((v - m) * L2E), lanes(i, cnt));
}

// The register path after the loads: r holds the invocation's slots (cnt valid elements, the
// rest LOWEST); returns the factor its exponentials are multiplied by, r holding them.
fn row_factor(lid: u32, r: ptr<function, Slots>, cnt: u32, slots: u32) -> f32 {
    let m4 = max(max(max((*r).s0, (*r).s1), max((*r).s2, (*r).s3)), max(max((*r).s4, (*r).s5), max((*r).s6, (*r).s7)));
    let m = max(max(m4.x, m4.y), max(m4.z, m4.w));
    (*r).s0 = ex((*r).s0, m, 0u, cnt, slots);
    (*r).s1 = ex((*r).s1, m, 1u, cnt, slots);
    (*r).s2 = ex((*r).s2, m, 2u, cnt, slots);
    (*r).s3 = ex((*r).s3, m, 3u, cnt, slots);
    (*r).s4 = ex((*r).s4, m, 4u, cnt, slots);
    (*r).s5 = ex((*r).s5, m, 5u, cnt, slots);
    (*r).s6 = ex((*r).s6, m, 6u, cnt, slots);
    (*r).s7 = ex((*r).s7, m, 7u, cnt, slots);
    let s4 = (((*r).s0 + (*r).s1) + ((*r).s2 + (*r).s3)) + (((*r).s4 + (*r).s5) + ((*r).s6 + (*r).s7));
    let total = reduce_max_sum(lid, m, (s4.x + s4.y) + (s4.z + s4.w));
    // S ≥ 1 − 3 ulp: the row's maximum contributes exp2(0) to it, so the division is safe.
    return exp2((m - total.x) * L2E) / total.y;
}

// Slot i of the vec4 path: the row's vec4 number lid + WG·i (LOWEST past the row or unused).
fn ld(base: u32, n4: u32, lid: u32, i: u32, slots: u32) -> vec4<f32> {
    if i >= slots {
        return vec4<f32>(LOWEST);
    }
    let q = lid + WG * i;
    return select(vec4<f32>(LOWEST), x[base + min(q, n4 - 1u)], q < n4);
}

fn st(base: u32, n4: u32, lid: u32, i: u32, slots: u32, v: vec4<f32>) {
    let q = lid + WG * i;
    if i < slots && q < n4 {
        store4(4u * (base + q), v);
    }
}

// Slot i of the scalar path: lane k holds column lid + WG·(4i + k) (LOWEST past the row or unused).
fn ld_s(base: u32, cols: u32, lid: u32, i: u32, slots: u32) -> vec4<f32> {
    if i >= slots {
        return vec4<f32>(LOWEST);
    }
    let c = vec4<u32>(lid) + WG * (vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u));
    let e = vec4<u32>(base) + min(c, vec4<u32>(cols - 1u));
    let t = vec4<f32>(x[e.x >> 2u][e.x & 3u], x[e.y >> 2u][e.y & 3u], x[e.z >> 2u][e.z & 3u], x[e.w >> 2u][e.w & 3u]);
    return select(vec4<f32>(LOWEST), t, c < vec4<u32>(cols));
}

fn st_s(base: u32, cols: u32, lid: u32, i: u32, slots: u32, v: vec4<f32>) {
    if i >= slots {
        return;
    }
    for (var k = 0u; k < 4u; k++) {
        let c = lid + WG * (4u * i + k);
        if c < cols {
            let e = base + c;
            y[e] = v[k];
        }
    }
}

// Workgroups `wid` of `groups` take rows wid, wid + groups, …: how many rows this one gets.
fn my_rows(wid: u32, groups: u32) -> u32 {
    if wid >= dims.rows {
        return 0u;
    }
    return (dims.rows - wid - 1u) / groups + 1u;
}

// cols % 4 == 0 and cols ≤ CAP: slot i holds the row's vec4 number lid + WG·i.
@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let n4 = dims.cols / 4u; // ≥ 1
    let cnt = 4u * share(n4, lid);
    // Register slots any invocation uses: the others are skipped (a uniform branch).
    let slots = min(R, (n4 - 1u) / WG + 1u);
    let mine = my_rows(wid.x, groups.x);
    for (var it = 0u; it < mine; it++) {
        let b = (wid.x + it * groups.x) * n4;
        var r = Slots(
            ld(b, n4, lid, 0u, slots), ld(b, n4, lid, 1u, slots), ld(b, n4, lid, 2u, slots), ld(b, n4, lid, 3u, slots),
            ld(b, n4, lid, 4u, slots), ld(b, n4, lid, 5u, slots), ld(b, n4, lid, 6u, slots), ld(b, n4, lid, 7u, slots),
        );
        let f = row_factor(lid, &r, cnt, slots);
        st(b, n4, lid, 0u, slots, r.s0 * f);
        st(b, n4, lid, 1u, slots, r.s1 * f);
        st(b, n4, lid, 2u, slots, r.s2 * f);
        st(b, n4, lid, 3u, slots, r.s3 * f);
        st(b, n4, lid, 4u, slots, r.s4 * f);
        st(b, n4, lid, 5u, slots, r.s5 * f);
        st(b, n4, lid, 6u, slots, r.s6 * f);
        st(b, n4, lid, 7u, slots, r.s7 * f);
    }
}

// cols % 4 != 0 and cols ≤ CAP: lane k of slot i holds column lid + WG·(4i + k).
@compute @workgroup_size(256)
fn main_scalar(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let cols = dims.cols;
    let cnt = share(cols, lid);
    let slots = min(R, ((cols - 1u) / WG + 4u) / 4u); // as in `main`
    let mine = my_rows(wid.x, groups.x);
    for (var it = 0u; it < mine; it++) {
        let b = (wid.x + it * groups.x) * cols;
        var r = Slots(
            ld_s(b, cols, lid, 0u, slots), ld_s(b, cols, lid, 1u, slots), ld_s(b, cols, lid, 2u, slots), ld_s(b, cols, lid, 3u, slots),
            ld_s(b, cols, lid, 4u, slots), ld_s(b, cols, lid, 5u, slots), ld_s(b, cols, lid, 6u, slots), ld_s(b, cols, lid, 7u, slots),
        );
        let f = row_factor(lid, &r, cnt, slots);
        st_s(b, cols, lid, 0u, slots, r.s0 * f);
        st_s(b, cols, lid, 1u, slots, r.s1 * f);
        st_s(b, cols, lid, 2u, slots, r.s2 * f);
        st_s(b, cols, lid, 3u, slots, r.s3 * f);
        st_s(b, cols, lid, 4u, slots, r.s4 * f);
        st_s(b, cols, lid, 5u, slots, r.s5 * f);
        st_s(b, cols, lid, 6u, slots, r.s6 * f);
        st_s(b, cols, lid, 7u, slots, r.s7 * f);
    }
}

// cols > CAP: a strided sweep with an online (max, sum), then a second sweep writes.
@compute @workgroup_size(256)
fn main_long(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let cols = dims.cols;
    let cnt = share(cols, lid);
    let mine = my_rows(wid.x, groups.x);
    for (var it = 0u; it < mine; it++) {
        let base = (wid.x + it * groups.x) * cols;
        var m = LOWEST;
        var s = 0.0;
        for (var t = 0u; t < cnt; t++) {
            let e = base + lid + WG * t;
            let v = x[e >> 2u][e & 3u];
            let nm = max(m, v);
            s = s * exp2((m - nm) * L2E) + exp2((v - nm) * L2E);
            m = nm;
        }
        let total = reduce_max_sum(lid, m, s);
        let inv = 1.0 / total.y; // S ≥ 1 − 3 ulp, as in row_factor
        for (var t = 0u; t < cnt; t++) {
            let e = base + lid + WG * t;
            y[e] = exp2((x[e >> 2u][e & 3u] - total.x) * L2E) * inv;
        }
    }
}

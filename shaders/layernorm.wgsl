// In bounds: every x/y index is row·cols + c and every gain/bias index c, with row < rows, c < cols (loads clamp c, stores test it; rows·cols ≤ 2³², buffers padded to whole vec4s); loops count iterations instead of stepping past u32; n = cols ≥ 1.
// layernorm: row-wise y = (x − mean) / sqrt(var + 1e-5) · gain + bias over f32 rows × cols.
// One 256-invocation workgroup per row (grid-stride over rows). Rows of at most CAP = 8192
// columns are held in registers: each invocation loads its R = 8 vec4 slots of the row once
// (`main`: coalesced vec4 loads when cols % 4 == 0, so every row starts 16-byte aligned;
// `main_scalar`: coalesced scalar loads otherwise), sums them, the workgroup sums the 256 partials
// (two levels of 16 in workgroup memory, pairwise, 2 barriers) into the mean, then the centred
// Σ(x − mean)² from the same registers the same way into the variance, and each element is
// written once: one global read and one write per element (gain and bias are re-read per row
// from cache). Longer rows (`main_long`) sweep the row three times (sum, centred squares, write).

struct Dims { rows: u32, cols: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gain: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

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
const EPS: f32 = 1e-5;
const P: u32 = 16u; // partials per second-level invocation (WG = P · P)

var<workgroup> red: array<f32, WG>;
var<workgroup> part: array<f32, P>;

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

// Entries o, o + stride, o + 2·stride, o + 3·stride of `red`.
fn red4(o: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(red[o], red[o + stride], red[o + 2u * stride], red[o + 3u * stride]);
}

// Pairwise sum of the 16 entries at, at + stride, …, at + 15·stride of `red` (depth 4, a tree).
fn sum16(at: u32, stride: u32) -> f32 {
    let t = (red4(at, stride) + red4(at + 4u * stride, stride))
        + (red4(at + 8u * stride, stride) + red4(at + 12u * stride, stride));
    return (t.x + t.y) + (t.z + t.w);
}

// Sum `v` over the workgroup (pairwise within each level, depth 8 like a tree); every invocation
// gets the total. Two barriers; no trailing one is needed: the next call writes `red` only after
// its callers passed this call's second barrier (level-1 reads done) and `part` only after its
// own first barrier, which every invocation reaches after reading this call's partials.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    if lid < P {
        part[lid] = sum16(lid, P);
    }
    workgroupBarrier();
    let t = (vec4<f32>(part[0], part[1], part[2], part[3])
        + vec4<f32>(part[4], part[5], part[6], part[7]))
        + (vec4<f32>(part[8], part[9], part[10], part[11])
        + vec4<f32>(part[12], part[13], part[14], part[15]));
    return (t.x + t.y) + (t.z + t.w);
}

// An invocation's R = 8 register slots, named rather than an array so that no compiler has to
// unroll a loop to keep them in registers.
struct Slots { s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>, s4: vec4<f32>, s5: vec4<f32>, s6: vec4<f32>, s7: vec4<f32> }

// Slot i's centred squares; 0 in lanes past the invocation's `cnt` elements and in slots no
// invocation uses (i ≥ slots, a uniform test).
fn sq(v: vec4<f32>, mean: f32, i: u32, cnt: u32, slots: u32) -> vec4<f32> {
    if i >= slots {
        return vec4<f32>(0.0);
    }
    let d = v - mean;
    return select(vec4<f32>(0.0), d * d, lanes(i, cnt));
}

// The register path after the loads: r holds the invocation's slots (cnt valid elements, the
// rest 0); returns (mean, 1 / sqrt(var + EPS)) of the row.
fn row_stats(lid: u32, r: Slots, cnt: u32, slots: u32) -> vec2<f32> {
    let n = f32(dims.cols);
    let s4 = ((r.s0 + r.s1) + (r.s2 + r.s3)) + ((r.s4 + r.s5) + (r.s6 + r.s7));
    let mean = workgroup_sum(lid, (s4.x + s4.y) + (s4.z + s4.w)) / n;
    let q4 = ((sq(r.s0, mean, 0u, cnt, slots) + sq(r.s1, mean, 1u, cnt, slots))
        + (sq(r.s2, mean, 2u, cnt, slots) + sq(r.s3, mean, 3u, cnt, slots)))
        + ((sq(r.s4, mean, 4u, cnt, slots) + sq(r.s5, mean, 5u, cnt, slots))
        + (sq(r.s6, mean, 6u, cnt, slots) + sq(r.s7, mean, 7u, cnt, slots)));
    let var_ = workgroup_sum(lid, (q4.x + q4.y) + (q4.z + q4.w)) / n;
    return vec2<f32>(mean, inverseSqrt(var_ + EPS));
}

// Slot i of the vec4 path: the row's vec4 number lid + WG·i (0 past the row or unused).
fn ld(base: u32, n4: u32, lid: u32, i: u32, slots: u32) -> vec4<f32> {
    if i >= slots {
        return vec4<f32>(0.0);
    }
    let q = lid + WG * i;
    return select(vec4<f32>(0.0), x[base + min(q, n4 - 1u)], q < n4);
}

// Write slot i of the vec4 path normalised by ms = (mean, rstd).
fn st(base: u32, n4: u32, lid: u32, i: u32, slots: u32, v: vec4<f32>, ms: vec2<f32>) {
    let q = lid + WG * i;
    if i < slots && q < n4 {
        store4(4u * (base + q), (v - ms.x) * ms.y * gain[q] + bias[q]);
    }
}

// Slot i of the scalar path: lane k holds column lid + WG·(4i + k) (0 past the row or unused).
fn ld_s(base: u32, cols: u32, lid: u32, i: u32, slots: u32) -> vec4<f32> {
    if i >= slots {
        return vec4<f32>(0.0);
    }
    let c = vec4<u32>(lid) + WG * (vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u));
    let e = vec4<u32>(base) + min(c, vec4<u32>(cols - 1u));
    let t = vec4<f32>(x[e.x >> 2u][e.x & 3u], x[e.y >> 2u][e.y & 3u], x[e.z >> 2u][e.z & 3u], x[e.w >> 2u][e.w & 3u]);
    return select(vec4<f32>(0.0), t, c < vec4<u32>(cols));
}

fn st_s(base: u32, cols: u32, lid: u32, i: u32, slots: u32, v: vec4<f32>, ms: vec2<f32>) {
    if i >= slots {
        return;
    }
    for (var k = 0u; k < 4u; k++) {
        let c = lid + WG * (4u * i + k);
        if c < cols {
            let e = base + c;
            let g = gain[c >> 2u][c & 3u];
            let b = bias[c >> 2u][c & 3u];
            y[e] = (v[k] - ms.x) * ms.y * g + b;
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
        let r = Slots(
            ld(b, n4, lid, 0u, slots), ld(b, n4, lid, 1u, slots), ld(b, n4, lid, 2u, slots), ld(b, n4, lid, 3u, slots),
            ld(b, n4, lid, 4u, slots), ld(b, n4, lid, 5u, slots), ld(b, n4, lid, 6u, slots), ld(b, n4, lid, 7u, slots),
        );
        let ms = row_stats(lid, r, cnt, slots);
        st(b, n4, lid, 0u, slots, r.s0, ms);
        st(b, n4, lid, 1u, slots, r.s1, ms);
        st(b, n4, lid, 2u, slots, r.s2, ms);
        st(b, n4, lid, 3u, slots, r.s3, ms);
        st(b, n4, lid, 4u, slots, r.s4, ms);
        st(b, n4, lid, 5u, slots, r.s5, ms);
        st(b, n4, lid, 6u, slots, r.s6, ms);
        st(b, n4, lid, 7u, slots, r.s7, ms);
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
        let r = Slots(
            ld_s(b, cols, lid, 0u, slots), ld_s(b, cols, lid, 1u, slots), ld_s(b, cols, lid, 2u, slots), ld_s(b, cols, lid, 3u, slots),
            ld_s(b, cols, lid, 4u, slots), ld_s(b, cols, lid, 5u, slots), ld_s(b, cols, lid, 6u, slots), ld_s(b, cols, lid, 7u, slots),
        );
        let ms = row_stats(lid, r, cnt, slots);
        st_s(b, cols, lid, 0u, slots, r.s0, ms);
        st_s(b, cols, lid, 1u, slots, r.s1, ms);
        st_s(b, cols, lid, 2u, slots, r.s2, ms);
        st_s(b, cols, lid, 3u, slots, r.s3, ms);
        st_s(b, cols, lid, 4u, slots, r.s4, ms);
        st_s(b, cols, lid, 5u, slots, r.s5, ms);
        st_s(b, cols, lid, 6u, slots, r.s6, ms);
        st_s(b, cols, lid, 7u, slots, r.s7, ms);
    }
}

// cols > CAP: strided sweeps for the sum, the centred squares and the write.
@compute @workgroup_size(256)
fn main_long(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let cols = dims.cols;
    let n = f32(cols);
    let cnt = share(cols, lid);
    let mine = my_rows(wid.x, groups.x);
    for (var it = 0u; it < mine; it++) {
        let base = (wid.x + it * groups.x) * cols;
        var s = 0.0;
        for (var t = 0u; t < cnt; t++) {
            let e = base + lid + WG * t;
            s += x[e >> 2u][e & 3u];
        }
        let mean = workgroup_sum(lid, s) / n;
        var q = 0.0;
        for (var t = 0u; t < cnt; t++) {
            let e = base + lid + WG * t;
            let d = x[e >> 2u][e & 3u] - mean;
            q = fma(d, d, q);
        }
        let rstd = inverseSqrt(workgroup_sum(lid, q) / n + EPS);
        for (var t = 0u; t < cnt; t++) {
            let c = lid + WG * t;
            let e = base + c;
            let g = gain[c >> 2u][c & 3u];
            let b = bias[c >> 2u][c & 3u];
            y[e] = (x[e >> 2u][e & 3u] - mean) * rstd * g + b;
        }
    }
}

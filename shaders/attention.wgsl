// In bounds: q/o rows are clamped to seq − 1 (o stored only for row < seq), K/V keys to seq − 1 (then zeroed past seq), tile slots are < BC·D4 by construction; batch·heads·seq·64 ≤ 2³² (checked by the workload), so no index wraps; l ≥ 1 before the division.
// attention: fused scaled-dot-product attention with an online softmax (flash-style), f32.
// q, k, v, o are [batch][heads][seq][64]. A 128-invocation workgroup owns 128 query rows of one
// (batch, head), one row per invocation held in registers, pre-scaled by scale·log2(e) so scores
// are in base 2 and every exponential is one exp2. It walks the keys in tiles of BC = 16 keys whose
// K and V rows sit in double-buffered workgroup memory: while tile t is computed from one buffer,
// tile t + 1 is loaded into registers and then stored into the other, so one barrier per tile
// suffices and the loads' latency hides behind the arithmetic. Keys past seq are zero-padded. Per
// tile an invocation computes its 16 scores (every invocation reads the same K element: a
// broadcast), masks keys past seq and, with `causal`, keys after its row by `select` with MASKED
// (no branches in the inner loops), and rescales its running max, denominator and output once.
// With `causal` the workgroup stops after the tile holding its last row's diagonal.

struct Dims { seq: u32, causal: u32, scale: f32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;

const D4: u32 = 16u; // head dimension 64 as vec4s
const BR: u32 = 128u; // query rows per workgroup, one per invocation
const BC: u32 = 16u; // keys per tile
const LOADS: u32 = 2u; // BC · D4 / BR vec4s of K (and of V) each invocation stages per tile
const L2E: f32 = 1.4426950408889634;
// A masked score: far below any real one, finite, so MASKED − m never makes inf or NaN and exp2
// of it is 0.
const MASKED: f32 = -1.0e30;

// 2 buffers × 16 keys × 64 floats, for K and for V: 16 KiB in all.
var<workgroup> k_tile: array<array<array<vec4<f32>, D4>, BC>, 2>;
var<workgroup> v_tile: array<array<array<vec4<f32>, D4>, BC>, 2>;

@compute @workgroup_size(128)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let seq = dims.seq;
    let causal = dims.causal != 0u;
    let head_base = wid.y * seq; // first row of this (batch, head)
    let row0 = wid.x * BR;
    let row = row0 + lid;
    let qrow = min(row, seq - 1u);
    let qscale = dims.scale * L2E;

    var qv: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var d = 0u; d < D4; d++) {
        qv[d] = q[(head_base + qrow) * D4 + d] * qscale;
        acc[d] = vec4<f32>(0.0);
    }
    var m = MASKED;
    var l = 0.0;

    // Uniform over the workgroup: keys [0, end) matter to some row of it. seq ≤ 2²⁶, no overflow.
    var end = seq;
    if causal {
        end = min(seq, row0 + BR);
    }
    let tiles = (end + BC - 1u) / BC; // ≥ 1

    // Staging: invocation lid moves tile slots lid + BR·i, i.e. key slot / D4, dimension slot % D4
    // (consecutive invocations, consecutive 16-byte words: coalesced loads, conflict-free stores).
    var kr: array<vec4<f32>, LOADS>;
    var vr: array<vec4<f32>, LOADS>;
    for (var i = 0u; i < LOADS; i++) {
        let e = lid + BR * i;
        let key = e / D4;
        let at = (head_base + min(key, seq - 1u)) * D4 + e % D4;
        k_tile[0][key][e % D4] = select(vec4<f32>(0.0), k[at], key < seq);
        v_tile[0][key][e % D4] = select(vec4<f32>(0.0), v[at], key < seq);
    }
    workgroupBarrier();

    for (var t = 0u; t < tiles; t++) {
        let cur = t & 1u;
        let kb = t * BC;
        let more = t + 1u < tiles; // uniform
        if more {
            for (var i = 0u; i < LOADS; i++) {
                let e = lid + BR * i;
                let key = kb + BC + e / D4;
                let at = (head_base + min(key, seq - 1u)) * D4 + e % D4;
                kr[i] = select(vec4<f32>(0.0), k[at], key < seq);
                vr[i] = select(vec4<f32>(0.0), v[at], key < seq);
            }
        }

        var s: array<f32, BC>;
        var tile_max = MASKED;
        for (var j = 0u; j < BC; j++) {
            var dot4 = vec4<f32>(0.0);
            for (var d = 0u; d < D4; d++) {
                dot4 = fma(qv[d], k_tile[cur][j][d], dot4);
            }
            let key = kb + j;
            let live = (key < seq) & (!causal | key <= row);
            s[j] = select(MASKED, (dot4.x + dot4.y) + (dot4.z + dot4.w), live);
            tile_max = max(tile_max, s[j]);
        }
        let m_new = max(m, tile_max);
        let correction = exp2(m - m_new);
        l *= correction;
        for (var d = 0u; d < D4; d++) {
            acc[d] *= correction;
        }
        for (var j = 0u; j < BC; j++) {
            // 0 for a masked key, also while every key so far is masked (m_new = MASKED).
            let p = select(0.0, exp2(s[j] - m_new), s[j] > MASKED);
            l += p;
            for (var d = 0u; d < D4; d++) {
                acc[d] = fma(vec4<f32>(p), v_tile[cur][j][d], acc[d]);
            }
        }
        m = m_new;

        // The other buffer was last read in tile t − 1, before the previous barrier.
        if more {
            for (var i = 0u; i < LOADS; i++) {
                let e = lid + BR * i;
                k_tile[cur ^ 1u][e / D4][e % D4] = kr[i];
                v_tile[cur ^ 1u][e / D4][e % D4] = vr[i];
            }
        }
        workgroupBarrier();
    }

    // Key 0 is live for every row and the largest score's key adds exp2(0) = 1 to l: l ≥ 1.
    if row < seq {
        let inv = 1.0 / l;
        for (var d = 0u; d < D4; d++) {
            o[(head_base + row) * D4 + d] = acc[d] * inv;
        }
    }
}

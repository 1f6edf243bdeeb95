// attention: fused scaled-dot-product attention with an online softmax (flash-style), f32.
// q, k, v, o are [batch][heads][seq][64]. A 64-invocation workgroup owns 64 query rows of one
// (batch, head), one row per invocation held in registers. It walks the keys in blocks of 32:
// the block's K and V are staged in workgroup memory, the row's 32 scores are computed, and the
// running max, denominator and output are rescaled once per block. With `causal`, key j > row
// is masked and blocks wholly above the diagonal are skipped.

struct Dims { seq: u32, causal: u32, scale: f32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;

const D4: u32 = 16u; // head dimension 64 as vec4s
const BR: u32 = 64u; // query rows per workgroup
const BC: u32 = 32u; // keys per block
const LOWEST: f32 = -3.0e38;

var<workgroup> k_tile: array<array<vec4<f32>, D4>, BC>;
var<workgroup> v_tile: array<array<vec4<f32>, D4>, BC>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let head_base = wid.y * dims.seq; // first row of this (batch, head)
    let row0 = wid.x * BR;
    let row = row0 + lid;
    let live = row < dims.seq;
    let qrow = min(row, dims.seq - 1u);

    var qv: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var d = 0u; d < D4; d++) {
        qv[d] = q[(head_base + qrow) * D4 + d] * dims.scale;
        acc[d] = vec4<f32>(0.0);
    }
    var m = LOWEST;
    var l = 0.0;

    var end = dims.seq;
    if dims.causal != 0u {
        end = min(dims.seq, row0 + BR);
    }
    for (var kb = 0u; kb < end; kb += BC) {
        // 64 invocations stage 32 rows × 16 vec4s of K and of V: 8 of each per invocation.
        for (var e = lid; e < BC * D4; e += BR) {
            let j = e / D4;
            let d = e % D4;
            let key = min(kb + j, dims.seq - 1u);
            k_tile[j][d] = k[(head_base + key) * D4 + d];
            v_tile[j][d] = v[(head_base + key) * D4 + d];
        }
        workgroupBarrier();

        var scores: array<f32, BC>;
        var block_max = LOWEST;
        for (var j = 0u; j < BC; j++) {
            let key = kb + j;
            var s = LOWEST;
            if key < dims.seq && (dims.causal == 0u || key <= row) {
                var dot4 = vec4<f32>(0.0);
                for (var d = 0u; d < D4; d++) {
                    dot4 = fma(qv[d], k_tile[j][d], dot4);
                }
                s = (dot4.x + dot4.y) + (dot4.z + dot4.w);
            }
            scores[j] = s;
            block_max = max(block_max, s);
        }
        let m_new = max(m, block_max);
        let correction = exp(m - m_new);
        l *= correction;
        for (var d = 0u; d < D4; d++) {
            acc[d] *= correction;
        }
        for (var j = 0u; j < BC; j++) {
            // Masked keys contribute nothing, even while every score so far is masked.
            var p = 0.0;
            if scores[j] > LOWEST {
                p = exp(scores[j] - m_new);
            }
            l += p;
            for (var d = 0u; d < D4; d++) {
                acc[d] = fma(vec4<f32>(p), v_tile[j][d], acc[d]);
            }
        }
        m = m_new;
        workgroupBarrier();
    }

    if live {
        let inv = 1.0 / l;
        for (var d = 0u; d < D4; d++) {
            o[(head_base + row) * D4 + d] = acc[d] * inv;
        }
    }
}

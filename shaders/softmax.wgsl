// softmax: row-wise, numerically stable, f32 rows × cols (attention scores, logits).
// One workgroup per row (grid-stride over rows). Each invocation keeps an online (max, sum of
// exp) pair over its strided slice; the pairs merge in a tree; a second sweep writes
// y = exp(x − max) / sum. The row is read twice but counted once: its second read hits cache.

struct Dims { rows: u32, cols: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
// Below any finite input, so exp(LOWEST − m) is 0 rather than NaN as with −inf.
const LOWEST: f32 = -3.0e38;
var<workgroup> max_s: array<f32, WG>;
var<workgroup> sum_s: array<f32, WG>;

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    for (var row = wid.x; row < dims.rows; row += groups.x) {
        let base = row * dims.cols;
        var m = LOWEST;
        var s = 0.0;
        for (var c = lid; c < dims.cols; c += WG) {
            let v = x[base + c];
            let nm = max(m, v);
            s = s * exp(m - nm) + exp(v - nm);
            m = nm;
        }
        max_s[lid] = m;
        sum_s[lid] = s;
        for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
            workgroupBarrier();
            if lid < stride {
                let m1 = max_s[lid];
                let m2 = max_s[lid + stride];
                let nm = max(m1, m2);
                sum_s[lid] = sum_s[lid] * exp(m1 - nm) + sum_s[lid + stride] * exp(m2 - nm);
                max_s[lid] = nm;
            }
        }
        workgroupBarrier();
        let row_max = max_s[0];
        let inv = 1.0 / sum_s[0];
        // Everyone has read the row's totals before the next row overwrites them.
        workgroupBarrier();
        for (var c = lid; c < dims.cols; c += WG) {
            y[base + c] = exp(x[base + c] - row_max) * inv;
        }
    }
}

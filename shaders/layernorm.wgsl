// layernorm: row-wise y = (x − mean) / sqrt(var + 1e-5) · gain + bias over f32 rows × cols.
// One workgroup per row (grid-stride over rows); mean, then the centred variance (two tree
// reductions, no cancellation), then the write sweep. Later sweeps of a row hit cache.

struct Dims { rows: u32, cols: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gain: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
const EPS: f32 = 1e-5;
var<workgroup> scratch: array<f32, WG>;

// Sum `v` over the workgroup; every invocation gets the total.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    scratch[lid] = v;
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        workgroupBarrier();
        if lid < stride {
            scratch[lid] += scratch[lid + stride];
        }
    }
    workgroupBarrier();
    let total = scratch[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let n = f32(dims.cols);
    for (var row = wid.x; row < dims.rows; row += groups.x) {
        let base = row * dims.cols;
        var s = 0.0;
        for (var c = lid; c < dims.cols; c += WG) {
            s += x[base + c];
        }
        let mean = workgroup_sum(lid, s) / n;
        var q = 0.0;
        for (var c = lid; c < dims.cols; c += WG) {
            let d = x[base + c] - mean;
            q = fma(d, d, q);
        }
        let rstd = inverseSqrt(workgroup_sum(lid, q) / n + EPS);
        for (var c = lid; c < dims.cols; c += WG) {
            y[base + c] = (x[base + c] - mean) * rstd * gain[c] + bias[c];
        }
    }
}

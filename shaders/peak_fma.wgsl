// peak_fma: the device's f32 FMA ceiling. Each invocation runs 8 independent vec4 chains
// x = fma(x, a, b) for `iters` steps from values it loads, entirely in registers, and writes
// their sum. a < 1, so the chains contract toward b / (1 − a) and stay finite; the result
// still depends on the step count, so a kernel that skipped steps would not verify.

struct Params { iters: u32, a: f32, b: f32, _pad: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> seeds: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const CHAINS: u32 = 8u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = seeds[gid.x];
    let a = vec4<f32>(params.a);
    let b = vec4<f32>(params.b);
    var x: array<vec4<f32>, CHAINS>;
    for (var c = 0u; c < CHAINS; c++) {
        x[c] = vec4<f32>(s, 1.0 - s, 0.5 * s, 1.0 - 0.5 * s) + f32(c) * 0.01;
    }
    for (var i = 0u; i < params.iters; i++) {
        for (var c = 0u; c < CHAINS; c++) {
            x[c] = fma(x[c], a, b);
        }
    }
    var total = vec4<f32>(0.0);
    for (var c = 0u; c < CHAINS; c++) {
        total += x[c];
    }
    out[gid.x] = (total.x + total.y) + (total.z + total.w);
}

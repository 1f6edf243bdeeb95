// peak_fma: the device's f32 FMA ceiling. Each invocation runs 8 independent vec4 chains
// x = fma(x, a, b) for `iters` steps, entirely in registers, and writes their sum. Chain c starts
// at s + (1, 2, 3, 4) + c/8, where s is the invocation's seed (a multiple of 1/256), so every
// start value is exact in any evaluation order. a < 1, so the chains contract toward
// b / (1 − a) = 0.5 and stay finite, each step shrinking the distance to 0.5 by a: the sum
// depends on the seed and on every step. The CPU replays the chains fused and unfused; at the
// suites' step counts (64 to 4096) a wrong seed or one skipped step lands beyond its tolerance,
// while past about 6500 steps the chains have converged too far to tell.

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
        x[c] = vec4<f32>(s) + vec4<f32>(1.0, 2.0, 3.0, 4.0) + f32(c) * 0.125;
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

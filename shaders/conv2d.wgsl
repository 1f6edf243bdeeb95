// conv2d: NCHW 3×3 convolution, stride 1, padding 1, f32 (vision backbones, U-Nets).
// A 16×16 workgroup computes a 16×16 tile of output pixels for 8 output channels. Per input
// channel it stages the 18×18 input patch (with the zero border) and the 8×9 weights in
// workgroup memory, then each invocation accumulates its pixel for the 8 channels.

struct Dims { n: u32, c: u32, k: u32, h: u32, w: u32, k_blocks: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const TILE: u32 = 16u;
const KB: u32 = 8u;
const PATCH: u32 = 18u;
var<workgroup> tile: array<array<f32, PATCH>, PATCH>;
var<workgroup> wts: array<f32, 72>;

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let flat = lid.y * TILE + lid.x;
    let img = wid.z / dims.k_blocks;
    let k0 = (wid.z % dims.k_blocks) * KB;
    let ox = wid.x * TILE + lid.x;
    let oy = wid.y * TILE + lid.y;
    var acc: array<f32, KB>;

    for (var ci = 0u; ci < dims.c; ci++) {
        let plane = (img * dims.c + ci) * dims.h;
        for (var e = flat; e < PATCH * PATCH; e += TILE * TILE) {
            let py = e / PATCH;
            let px = e % PATCH;
            // Input coordinates are one less than the patch's: the padding border.
            let gy = i32(wid.y * TILE + py) - 1;
            let gx = i32(wid.x * TILE + px) - 1;
            var v = 0.0;
            if gy >= 0 && gy < i32(dims.h) && gx >= 0 && gx < i32(dims.w) {
                v = x[(plane + u32(gy)) * dims.w + u32(gx)];
            }
            tile[py][px] = v;
        }
        if flat < KB * 9u {
            let kk = k0 + flat / 9u;
            var wv = 0.0;
            if kk < dims.k {
                wv = weights[(kk * dims.c + ci) * 9u + flat % 9u];
            }
            wts[flat] = wv;
        }
        workgroupBarrier();
        for (var t = 0u; t < 9u; t++) {
            let v = tile[lid.y + t / 3u][lid.x + t % 3u];
            for (var kk = 0u; kk < KB; kk++) {
                acc[kk] = fma(v, wts[kk * 9u + t], acc[kk]);
            }
        }
        workgroupBarrier();
    }

    if ox < dims.w && oy < dims.h {
        for (var kk = 0u; kk < KB; kk++) {
            let ko = k0 + kk;
            if ko < dims.k {
                y[((img * dims.k + ko) * dims.h + oy) * dims.w + ox] = acc[kk];
            }
        }
    }
}

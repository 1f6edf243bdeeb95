// hgemm: C = A·B with f16 A and B, f32 accumulate and f32 C (mixed-precision dense layers);
// row-major A (M×K), B (K×N), C (M×N). The sgemm kernel's shape: a 16×16 workgroup computes a
// 64×64 tile of C in 4×4 register blocks; the f16 inputs are widened as they are staged in
// workgroup memory; edges are bounds-checked. Needs SHADER_F16 (f16 in storage buffers).

enable f16;

struct Dims { m: u32, n: u32, k: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> b: array<f16>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;
const BLOCK: u32 = 4u;

// a_tile is stored transposed ([depth][row]) so the inner loop reads both tiles along rows.
var<workgroup> a_tile: array<array<f32, TILE>, DEPTH>;
var<workgroup> b_tile: array<array<f32, TILE>, DEPTH>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let flat = lid.y * 16u + lid.x;
    var acc: array<array<f32, BLOCK>, BLOCK>;

    // ceil(k / DEPTH) steps, counted so that no index wraps at k near 2^32 (loops are not
    // bounded by the driver in trusted mode).
    let steps = dims.k / DEPTH + select(0u, 1u, dims.k % DEPTH != 0u);
    for (var step = 0u; step < steps; step++) {
        let k0 = step * DEPTH;
        // 256 invocations load 64×16 elements of A and 16×64 of B: four each.
        for (var l = 0u; l < 4u; l++) {
            let e = flat + l * 256u;
            let ar = e / DEPTH;
            let ak = e % DEPTH;
            let gr = row0 + ar;
            let gk = k0 + ak;
            var av = 0.0;
            if gr < dims.m && gk < dims.k {
                av = f32(a[gr * dims.k + gk]);
            }
            a_tile[ak][ar] = av;

            let bk = e / TILE;
            let bc = e % TILE;
            let gk2 = k0 + bk;
            let gc = col0 + bc;
            var bv = 0.0;
            if gk2 < dims.k && gc < dims.n {
                bv = f32(b[gk2 * dims.n + gc]);
            }
            b_tile[bk][bc] = bv;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < DEPTH; kk++) {
            var av: array<f32, BLOCK>;
            var bv: array<f32, BLOCK>;
            for (var i = 0u; i < BLOCK; i++) {
                av[i] = a_tile[kk][lid.y * BLOCK + i];
                bv[i] = b_tile[kk][lid.x * BLOCK + i];
            }
            for (var i = 0u; i < BLOCK; i++) {
                for (var j = 0u; j < BLOCK; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < BLOCK; i++) {
        let r = row0 + lid.y * BLOCK + i;
        for (var j = 0u; j < BLOCK; j++) {
            let col = col0 + lid.x * BLOCK + j;
            if r < dims.m && col < dims.n {
                c[r * dims.n + col] = acc[i][j];
            }
        }
    }
}

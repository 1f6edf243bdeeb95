// sgemm_subgroup: C = A·B in f32 like sgemm (64×64 tiles, 4×4 register blocks, depth-16 stages,
// bounds-checked edges), but each invocation's four A values per step come from subgroup
// shuffles instead of four workgroup-memory reads: in each run of lanes that share a block row,
// four lanes read one A value each and the run shuffles them to everyone.
// Needs the SUBGROUP feature, a subgroup of at least 4 lanes, and lanes numbered along
// local_invocation_index (true of the drivers seen; verification would catch it otherwise).

struct Dims { m: u32, n: u32, k: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;
const BLOCK: u32 = 4u;

var<workgroup> a_tile: array<array<f32, TILE>, DEPTH>;
var<workgroup> b_tile: array<array<f32, TILE>, DEPTH>;

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) flat: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let tx = flat % 16u;
    let ty = flat / 16u;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    // Lanes sharing `ty` form runs of `run` lanes; the first four of a run read A.
    let run = min(sg_size, 16u);
    let run_base = lane - lane % run;
    let a_index = ty * BLOCK + min(lane % run, BLOCK - 1u);
    var acc: array<array<f32, BLOCK>, BLOCK>;

    // ceil(k / DEPTH) steps, counted so that no index wraps at k near 2^32 (loops are not
    // bounded by the driver in trusted mode).
    let steps = dims.k / DEPTH + select(0u, 1u, dims.k % DEPTH != 0u);
    for (var step = 0u; step < steps; step++) {
        let k0 = step * DEPTH;
        for (var l = 0u; l < 4u; l++) {
            let e = flat + l * 256u;
            let ar = e / DEPTH;
            let ak = e % DEPTH;
            let gr = row0 + ar;
            let gk = k0 + ak;
            var av = 0.0;
            if gr < dims.m && gk < dims.k {
                av = a[gr * dims.k + gk];
            }
            a_tile[ak][ar] = av;

            let bk = e / TILE;
            let bc = e % TILE;
            let gk2 = k0 + bk;
            let gc = col0 + bc;
            var bv = 0.0;
            if gk2 < dims.k && gc < dims.n {
                bv = b[gk2 * dims.n + gc];
            }
            b_tile[bk][bc] = bv;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < DEPTH; kk++) {
            let mine = a_tile[kk][a_index];
            var av: array<f32, BLOCK>;
            var bv: array<f32, BLOCK>;
            for (var i = 0u; i < BLOCK; i++) {
                av[i] = subgroupShuffle(mine, run_base + i);
                bv[i] = b_tile[kk][tx * BLOCK + i];
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
        let r = row0 + ty * BLOCK + i;
        for (var j = 0u; j < BLOCK; j++) {
            let col = col0 + tx * BLOCK + j;
            if r < dims.m && col < dims.n {
                c[r * dims.n + col] = acc[i][j];
            }
        }
    }
}

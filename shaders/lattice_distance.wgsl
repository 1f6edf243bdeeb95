// In bounds: points are read only at p < m (n) and d < dim ≤ MAX_DIM (clamped), staged slots are
// d·STRIDE + p with p < TILE, every staged slot read (k < dim) is written first, zeros past m or n,
// and outputs are written only at i < m, j < n (the host holds m·n below 2^32).
// Coordinates are below 4097 (host), so differences fit i32 and sums of squares u32.
//
// lattice_distance: pairwise L1 and L2 distances between a batch of m lattice points and a batch
// of n (coordinates are u32, up to 8 dimensions; nearest-neighbour and kernel evaluations on
// the platform's lattices). A workgroup of 256 computes a 64×64 tile of pairs: each invocation a
// 4×4 block held in registers, rows ty + 16r and columns tx + 16c, so every store instruction
// writes 16 consecutive outputs of two rows. The tile's 64 points of each batch are read with
// coalesced loads (a tile's points are contiguous) and staged dimension-major in workgroup
// memory, rows padded to STRIDE words: the inner loop reads 16 consecutive B words (conflict
// free) and two broadcast A words per step; the padding keeps the staging stores at most 2-way
// conflicted for every dim (conflict free at dim 1, 4). One barrier. L1 is exact; L2 = sqrt of
// the exact integer sum (the host keeps dim·(size−1)² below 2^24).

struct Dims { m: u32, n: u32, dim: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> l1: array<u32>;
@group(0) @binding(4) var<storage, read_write> l2: array<f32>;

const TILE: u32 = 64u;
const BLOCK: u32 = 4u;
const MAX_DIM: u32 = 8u;
// Row stride of the staged points: 64 + 8 words (see the header).
const STRIDE: u32 = 72u;
var<workgroup> a_pts: array<u32, 576>; // MAX_DIM · STRIDE
var<workgroup> b_pts: array<u32, 576>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) flat: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let dim = clamp(dims.dim, 1u, MAX_DIM);
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    // Stage: element e = p·dim + d of the tile's contiguous run of points, 256 at a time.
    for (var e = flat; e < TILE * dim; e += 256u) {
        let p = e / dim;
        let d = e % dim;
        var va = 0u;
        if row0 + p < dims.m {
            va = a[row0 * dim + e];
        }
        a_pts[d * STRIDE + p] = va;
        var vb = 0u;
        if col0 + p < dims.n {
            vb = b[col0 * dim + e];
        }
        b_pts[d * STRIDE + p] = vb;
    }
    workgroupBarrier();

    let tx = flat % 16u;
    let ty = flat / 16u;
    var s1: array<vec4<u32>, BLOCK>;
    var s2: array<vec4<u32>, BLOCK>;
    for (var r = 0u; r < BLOCK; r++) {
        s1[r] = vec4(0u);
        s2[r] = vec4(0u);
    }
    for (var k = 0u; k < dim; k++) {
        let base = k * STRIDE;
        let y = vec4(
            b_pts[base + tx],
            b_pts[base + tx + 16u],
            b_pts[base + tx + 32u],
            b_pts[base + tx + 48u],
        );
        for (var r = 0u; r < BLOCK; r++) {
            // Wrapping u32 x − y: its square is diff² all the same, and as i32 its abs is |x − y|
            // (coordinates are below 4097): two operations instead of max, min and subtract.
            let diff = vec4(a_pts[base + ty + 16u * r]) - y;
            s1[r] += bitcast<vec4<u32>>(abs(bitcast<vec4<i32>>(diff)));
            s2[r] += diff * diff;
        }
    }
    for (var r = 0u; r < BLOCK; r++) {
        let i = row0 + ty + 16u * r;
        if i < dims.m {
            for (var c = 0u; c < BLOCK; c++) {
                let j = col0 + tx + 16u * c;
                if j < dims.n {
                    l1[i * dims.n + j] = s1[r][c];
                    l2[i * dims.n + j] = sqrt(f32(s2[r][c]));
                }
            }
        }
    }
}

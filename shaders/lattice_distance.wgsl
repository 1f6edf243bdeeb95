// lattice_distance: pairwise L1 and L2 distances between a batch of m lattice points and a batch
// of n (coordinates are u32, up to 8 dimensions; nearest-neighbour and kernel evaluations on
// the platform's lattices). A 16×16 workgroup computes a 16×16 block of pairs with both
// batches' points staged in workgroup memory. L1 is exact; L2 = sqrt of the exact integer sum.

struct Dims { m: u32, n: u32, dim: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> l1: array<u32>;
@group(0) @binding(4) var<storage, read_write> l2: array<f32>;

const T: u32 = 16u;
const MAX_DIM: u32 = 8u;
var<workgroup> a_pts: array<array<u32, MAX_DIM>, T>;
var<workgroup> b_pts: array<array<u32, MAX_DIM>, T>;

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    // 128 invocations stage A's 16 points, the other 128 stage B's.
    let flat = lid.y * T + lid.x;
    let e = flat % (T * MAX_DIM);
    let p = e / MAX_DIM;
    let d = e % MAX_DIM;
    if flat < T * MAX_DIM {
        let gi = wid.y * T + p;
        var v = 0u;
        if d < dims.dim && gi < dims.m {
            v = a[gi * dims.dim + d];
        }
        a_pts[p][d] = v;
    } else {
        let gj = wid.x * T + p;
        var v = 0u;
        if d < dims.dim && gj < dims.n {
            v = b[gj * dims.dim + d];
        }
        b_pts[p][d] = v;
    }
    workgroupBarrier();

    let i = wid.y * T + lid.y;
    let j = wid.x * T + lid.x;
    if i < dims.m && j < dims.n {
        var s1 = 0u;
        var s2 = 0u;
        for (var k = 0u; k < dims.dim; k++) {
            let x = a_pts[lid.y][k];
            let y = b_pts[lid.x][k];
            let diff = max(x, y) - min(x, y);
            s1 += diff;
            s2 += diff * diff;
        }
        l1[i * dims.n + j] = s1;
        l2[i * dims.n + j] = sqrt(f32(s2));
    }
}

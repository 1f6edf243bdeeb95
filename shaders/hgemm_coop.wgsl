// hgemm_coop: C = A·B with f16 A and B, f32 accumulate, on cooperative matrices (tensor cores);
// row-major A (M×K), B (K×N), C (M×N). One 32-invocation workgroup (one subgroup) computes a
// 32×32 tile of C as 2×2 accumulators of 16×16, stepping K by 16 with fragments loaded
// straight from the storage buffers. M and N must be multiples of 32 and K of 16.
// Needs EXPERIMENTAL_COOPERATIVE_MATRIX with a 16×16×16 f16 → f32 shape, SHADER_F16, and
// subgroups of at most 32 lanes. Cooperative operations stay in uniform control flow, and
// coopStoreT's arguments are bound with `let` first (naga's SPIR-V writer needs that).

enable f16;
enable wgpu_cooperative_matrix;

struct Dims { m: u32, n: u32, k: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> b: array<f16>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 32u;
const FRAG: u32 = 16u;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < dims.k; k0 += FRAG) {
        let ia0 = row0 * dims.k + k0;
        let ia1 = (row0 + FRAG) * dims.k + k0;
        let ib0 = k0 * dims.n + col0;
        let ib1 = ib0 + FRAG;
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a[ia0], dims.k);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a[ia1], dims.k);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b[ib0], dims.n);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&b[ib1], dims.n);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
    }
    let i00 = row0 * dims.n + col0;
    let i01 = i00 + FRAG;
    let i10 = (row0 + FRAG) * dims.n + col0;
    let i11 = i10 + FRAG;
    let stride = dims.n;
    coopStoreT(c00, &c[i00], stride);
    coopStoreT(c01, &c[i01], stride);
    coopStoreT(c10, &c[i10], stride);
    coopStoreT(c11, &c[i11], stride);
}

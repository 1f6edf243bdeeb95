// In bounds: global reads are guarded by row < m, col < n, k-index < k (whole 8-f16 vectors,
// since n and k are multiples of 8), C writes by row < m and col < n; workgroup indices are
// bounded by the constants below (largest A index 6135 < 6144, B 8439 < 8448, C staging 2047).
//
// hgemm_coop: C = A·B with f16 A and B, f32 accumulate, on cooperative matrices (tensor cores);
// row-major A (M×K), B (K×N), C (M×N). A workgroup of 256 invocations = 8 subgroups of 32 lanes
// computes a 128×256 block of C; subgroup w (invocations 32·w..32·w + 32) owns the 64×64 sub-block
// at rows (w / 4)·64, columns (w % 4)·64, as 4×4 accumulators of 16×16.
// K advances 16 per stage through double-buffered workgroup tiles: A as 128 rows × 16 (+8 pad)
// f16, B as 16 rows × 256 (+8 pad) f16. The pads (16 bytes) make the 16-byte row pieces a
// fragment load gathers fall in distinct banks (row strides of 48 and 528 bytes). While stage s
// multiplies (4 A and 4 B fragments loaded from workgroup memory, 16 multiply-adds per subgroup),
// every invocation reads stage s + 1 from global memory as three 16-byte vectors (one of A, two
// of B; each subgroup reads 16 rows × 32 bytes of A and 512 contiguous bytes of a row of B) and
// stores them to the other buffer after the multiply: one barrier per stage. Stores are f16
// scalars, rotated per lane so that each store instruction hits 32 distinct banks.
// The workgroup grid is walked in groups of 8 block-rows (the order in which the blocks that share
// rows of A and columns of B run together, for L2 reuse). Rows of A past M, columns of B past N
// and k past K are zeros in the tiles; C is written through a per-subgroup 16×16 f32 staging
// fragment, copied out with bounds checks, so M and N need not be multiples of the block.
// Needs EXPERIMENTAL_COOPERATIVE_MATRIX with a 16×16×16 f16 → f32 shape, SHADER_F16, subgroups of
// exactly 32 lanes and 37376 bytes of workgroup memory (HGEMM_COOP_WORKGROUP_BYTES in gemm.rs).
// Cooperative operations stay in uniform control flow (their pointers differ per subgroup, not
// within one), and coopStoreT's arguments are bound with `let` first (naga's SPIR-V writer needs
// that).

enable f16;
enable wgpu_cooperative_matrix;

struct Dims { m: u32, n: u32, k: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
// Eight f16 per element: rows of A (k long) and B (n long) are whole elements.
@group(0) @binding(1) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<u32>>;
// n is a multiple of 4, so rows of C are whole vec4s.
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

const BM: u32 = 128u;
const BN: u32 = 256u;
const BK: u32 = 16u;
// Padded row strides (f16) and buffer sizes of the A and B tiles.
const LDA: u32 = 24u;
const LDB: u32 = 264u;
const A_BUF: u32 = 3072u;
const B_BUF: u32 = 4224u;
// Block-rows per group of the block order.
const GROUP_M: u32 = 8u;

var<workgroup> as_: array<f16, 6144>;
var<workgroup> bs: array<f16, 8448>;
// One 16×16 f32 fragment per subgroup.
var<workgroup> cs: array<f32, 2048>;

// Eight f16 of row `row` of A from k-index `kk` (a multiple of 8), zeros outside A.
fn load_a(row: u32, kk: u32) -> vec4<u32> {
    if row < dims.m && kk < dims.k {
        return a[row * (dims.k / 8u) + kk / 8u];
    }
    return vec4<u32>(0u);
}

// Eight f16 of row `kr` of B from column `col` (a multiple of 8), zeros outside B.
fn load_b(kr: u32, col: u32) -> vec4<u32> {
    if kr < dims.k && col < dims.n {
        return b[kr * (dims.n / 8u) + col / 8u];
    }
    return vec4<u32>(0u);
}

// Store the eight f16 of `v` at as_[at..at + 8], word (j + rot) % 4 at store j.
fn put_a(at: u32, v: vec4<u32>, rot: u32) {
    for (var j = 0u; j < 4u; j++) {
        let w = (j + rot) & 3u;
        let h = vec2<f16>(unpack2x16float(v[w]));
        as_[at + 2u * w] = h.x;
        as_[at + 2u * w + 1u] = h.y;
    }
}

fn put_b(at: u32, v: vec4<u32>, rot: u32) {
    for (var j = 0u; j < 4u; j++) {
        let w = (j + rot) & 3u;
        let h = vec2<f16>(unpack2x16float(v[w]));
        bs[at + 2u * w] = h.x;
        bs[at + 2u * w + 1u] = h.y;
    }
}

// Copy subgroup `warp`'s staged fragment (rows r0..r0 + 16, columns c0..c0 + 16 of C) out, inside
// M×N. Called by every invocation in uniform control flow, right after the coopStoreT.
fn drain(warp: u32, lane: u32, r0: u32, c0: u32) {
    workgroupBarrier();
    let p = warp * 256u;
    for (var h = 0u; h < 2u; h++) {
        let v = lane + 32u * h;
        let r = v / 4u;
        let q = v % 4u;
        let s = p + r * 16u + q * 4u;
        let row = r0 + r;
        let col = c0 + q * 4u;
        if row < dims.m && col < dims.n {
            c[row * (dims.n / 4u) + col / 4u] = vec4<f32>(cs[s], cs[s + 1u], cs[s + 2u], cs[s + 3u]);
        }
    }
    // The next coopStoreT overwrites the fragment.
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    // Grouped block order: consecutive workgroups walk down GROUP_M block-rows, then right.
    // pid < gx·gy (≤ 2^32 by the dispatch limits); per_group ≥ 8; first_m < gy, so rows ≥ 1.
    let gx = groups.x;
    let gy = groups.y;
    let pid = wid.y * gx + wid.x;
    let per_group = GROUP_M * gx;
    let first_m = (pid / per_group) * GROUP_M;
    let rows = min(gy - first_m, GROUP_M);
    let in_group = pid % per_group;
    let bm = first_m + in_group % rows;
    let bn = in_group / rows;
    // bm < ceil(m / 128) and bn < ceil(n / 256): row0 < m, col0 < n.
    let row0 = bm * BM;
    let col0 = bn * BN;

    let warp = tid / 32u;
    let lane = tid % 32u;
    let wm = (warp / 4u) * 64u;
    let wn = (warp % 4u) * 64u;

    // This invocation's pieces of a stage: A row a_r, k-offset a_k; B k-row b_k (and b_k + 8),
    // columns b_c..b_c + 8. The store rotations spread each store over the 32 banks.
    let a_r = tid / 2u;
    let a_k = (tid % 2u) * 8u;
    let a_at = a_r * LDA + a_k;
    let a_rot = (a_r / 8u) % 2u + 2u * (tid % 2u);
    let b_k = tid / 32u;
    let b_c = (tid % 32u) * 8u;
    let b_at = b_k * LDB + b_c;
    let b_rot = lane / 8u;

    // ceil(k / 16) stages, without overflow.
    let stages = dims.k / BK + select(0u, 1u, dims.k % BK != 0u);

    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c22 = coop_mat16x16<f32, C>();
    var c23 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();
    var c32 = coop_mat16x16<f32, C>();
    var c33 = coop_mat16x16<f32, C>();

    // Stage 0 into buffer 0.
    var ra = load_a(row0 + a_r, a_k);
    var rb0 = load_b(b_k, col0 + b_c);
    var rb1 = load_b(b_k + 8u, col0 + b_c);
    put_a(a_at, ra, a_rot);
    put_b(b_at, rb0, b_rot);
    put_b(b_at + 8u * LDB, rb1, b_rot);
    workgroupBarrier();

    for (var s = 0u; s < stages; s++) {
        let cur = s % 2u;
        let more = s + 1u < stages;
        if more {
            // (s + 1)·16 < k here.
            let k_next = (s + 1u) * BK;
            ra = load_a(row0 + a_r, k_next + a_k);
            rb0 = load_b(k_next + b_k, col0 + b_c);
            rb1 = load_b(k_next + b_k + 8u, col0 + b_c);
        }
        let ab = cur * A_BUF + wm * LDA;
        let bb = cur * B_BUF + wn;
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&as_[ab], LDA);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&as_[ab + 16u * LDA], LDA);
        let a2 = coopLoadT<coop_mat16x16<f16, A>>(&as_[ab + 32u * LDA], LDA);
        let a3 = coopLoadT<coop_mat16x16<f16, A>>(&as_[ab + 48u * LDA], LDA);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&bs[bb], LDB);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&bs[bb + 16u], LDB);
        let b2 = coopLoadT<coop_mat16x16<f16, B>>(&bs[bb + 32u], LDB);
        let b3 = coopLoadT<coop_mat16x16<f16, B>>(&bs[bb + 48u], LDB);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c02 = coopMultiplyAdd(a0, b2, c02);
        c03 = coopMultiplyAdd(a0, b3, c03);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        c12 = coopMultiplyAdd(a1, b2, c12);
        c13 = coopMultiplyAdd(a1, b3, c13);
        c20 = coopMultiplyAdd(a2, b0, c20);
        c21 = coopMultiplyAdd(a2, b1, c21);
        c22 = coopMultiplyAdd(a2, b2, c22);
        c23 = coopMultiplyAdd(a2, b3, c23);
        c30 = coopMultiplyAdd(a3, b0, c30);
        c31 = coopMultiplyAdd(a3, b1, c31);
        c32 = coopMultiplyAdd(a3, b2, c32);
        c33 = coopMultiplyAdd(a3, b3, c33);
        if more {
            // The other buffer was last read in stage s - 1, before the barrier that ended it.
            let nb = 1u - cur;
            put_a(nb * A_BUF + a_at, ra, a_rot);
            put_b(nb * B_BUF + b_at, rb0, b_rot);
            put_b(nb * B_BUF + b_at + 8u * LDB, rb1, b_rot);
        }
        workgroupBarrier();
    }

    // Fragment (i, j) covers rows row0 + wm + 16·i.., columns col0 + wn + 16·j.. of C.
    let r0 = row0 + wm;
    let c0 = col0 + wn;
    let p = warp * 256u;
    let stride = 16u;
    coopStoreT(c00, &cs[p], stride);
    drain(warp, lane, r0, c0);
    coopStoreT(c01, &cs[p], stride);
    drain(warp, lane, r0, c0 + 16u);
    coopStoreT(c02, &cs[p], stride);
    drain(warp, lane, r0, c0 + 32u);
    coopStoreT(c03, &cs[p], stride);
    drain(warp, lane, r0, c0 + 48u);
    coopStoreT(c10, &cs[p], stride);
    drain(warp, lane, r0 + 16u, c0);
    coopStoreT(c11, &cs[p], stride);
    drain(warp, lane, r0 + 16u, c0 + 16u);
    coopStoreT(c12, &cs[p], stride);
    drain(warp, lane, r0 + 16u, c0 + 32u);
    coopStoreT(c13, &cs[p], stride);
    drain(warp, lane, r0 + 16u, c0 + 48u);
    coopStoreT(c20, &cs[p], stride);
    drain(warp, lane, r0 + 32u, c0);
    coopStoreT(c21, &cs[p], stride);
    drain(warp, lane, r0 + 32u, c0 + 16u);
    coopStoreT(c22, &cs[p], stride);
    drain(warp, lane, r0 + 32u, c0 + 32u);
    coopStoreT(c23, &cs[p], stride);
    drain(warp, lane, r0 + 32u, c0 + 48u);
    coopStoreT(c30, &cs[p], stride);
    drain(warp, lane, r0 + 48u, c0);
    coopStoreT(c31, &cs[p], stride);
    drain(warp, lane, r0 + 48u, c0 + 16u);
    coopStoreT(c32, &cs[p], stride);
    drain(warp, lane, r0 + 48u, c0 + 32u);
    coopStoreT(c33, &cs[p], stride);
    drain(warp, lane, r0 + 48u, c0 + 48u);
}

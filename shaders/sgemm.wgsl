// In bounds: every global read is guarded by row < m, col < n, k-index < k (indices below m·k,
// k·n, m·n, each under 2^32 by fits_device), every C write by row < m and col < n, and every
// workgroup index is a compile-time-bounded function of the invocation id and the loop counter.
//
// sgemm: C = A·B in f32, row-major A (M×K), B (K×N), C (M×N).
// A 256-invocation workgroup computes a 128×128 block of C, stepping K by 8. Invocation
// (tx, ty) = (id % 16, id / 16) keeps an 8×8 block of C in registers: rows ty·4..+4 and
// 64 + ty·4..+4, columns tx·4..+4 and 64 + tx·4..+4, so per k it reads two vec4s of A and two of B
// from workgroup memory and issues 64 FMAs. In a 32-lane subgroup the A reads are two broadcast
// addresses and the B reads 16 consecutive vec4s: no bank conflicts.
// Tiles are double-buffered: the next K step's A and B elements are read from global memory into
// registers while the current step computes, then written to the other buffer; one barrier per
// K step. Each invocation reads four consecutive elements along K of one row of A (two per
// row-pair of lanes: 16 rows × 32 bytes per subgroup) and four consecutive elements along N of
// one row of B (512 contiguous bytes per subgroup). A and B are bound as f32 arrays, so rows of
// any length (k or n not a multiple of 4) are read correctly; elements outside A or B are zeros in
// the tiles, and C is written only inside M×N.
// The A tile is stored transposed (k-major, as_t[k][row]) so the compute loop reads rows as
// vec4s. Its scalar stores would put lanes with k and k + 4 in the same bank (a 128-float row
// stride); rows of k ≥ 4 are therefore stored with row index XOR 16 (vec4 index XOR 4), which
// moves them to the other half of the banks and keeps each vec4 contiguous. The A tile is an f32
// array (each invocation writes single components, and WGSL lets a write to one component of a
// vec4 access all of it: invocations sharing a vec4 would race); the compute loop reads its vec4s
// as four adjacent, 16-byte-aligned scalars. 16 KiB of workgroup memory in all (the WebGPU
// minimum limit), no padding needed.

struct Dims { m: u32, n: u32, k: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const BM: u32 = 128u;
const BN: u32 = 128u;
const BK: u32 = 8u;
// vec4s in one k-row of a tile, and in one buffer of a tile.
const ROW4: u32 = 32u;
const BUF4: u32 = 256u;

// [buffer][k][128 rows as 32 vec4s of 4 floats], the vec4 index XOR-swizzled by (k & 4).
var<workgroup> as_t: array<f32, 2048>;
// [buffer][k][128 columns as 32 vec4s].
var<workgroup> bs: array<vec4<f32>, 512>;

// The A tile's vec4 number `q` (in units of 4 floats).
fn a_vec4(q: u32) -> vec4<f32> {
    let o = 4u * q;
    return vec4<f32>(as_t[o], as_t[o + 1u], as_t[o + 2u], as_t[o + 3u]);
}

// Four elements of row `row` of A at k-indices k0..k0+4, zero where outside A.
fn load_a(row: u32, k0: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if row < dims.m {
        let base = row * dims.k;
        for (var i = 0u; i < 4u; i++) {
            if k0 + i < dims.k {
                v[i] = a[base + k0 + i];
            }
        }
    }
    return v;
}

// Four elements of row `kr` of B at columns c0..c0+4, zero where outside B.
fn load_b(kr: u32, c0: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if kr < dims.k {
        let base = kr * dims.n;
        for (var i = 0u; i < 4u; i++) {
            if c0 + i < dims.n {
                v[i] = b[base + c0 + i];
            }
        }
    }
    return v;
}

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    // wid.y < ceil(m / 128) and wid.x < ceil(n / 128), so row0 < m and col0 < n.
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let tx = tid % 16u;
    let ty = tid / 16u;

    // This invocation's share of each tile: A row a_r (0..128), k-offset a_k (0 or 4);
    // B k-row b_k (0..8), columns b_c4·4..+4.
    let a_r = tid / 2u;
    let a_k = (tid % 2u) * 4u;
    let b_k = tid / 32u;
    let b_c4 = tid % 32u;
    // Where this invocation's four A elements go: k-rows a_k..a_k+4, the row's swizzled vec4 and
    // component. a_k & 4 is the same for all four k-rows, so so is the swizzle.
    let a_slot = (a_r / 4u) ^ a_k;
    let a_comp = a_r % 4u;

    // ceil(k / 8) K steps, without the overflow of (k + 7) / 8 at k near 2^32.
    let steps = dims.k / BK + select(0u, 1u, dims.k % BK != 0u);

    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    // Step 0 into buffer 0.
    var ra = load_a(row0 + a_r, a_k);
    var rb = load_b(b_k, col0 + b_c4 * 4u);
    for (var i = 0u; i < 4u; i++) {
        as_t[4u * ((a_k + i) * ROW4 + a_slot) + a_comp] = ra[i];
    }
    bs[b_k * ROW4 + b_c4] = rb;
    workgroupBarrier();

    for (var s = 0u; s < steps; s++) {
        let cur = (s % 2u) * BUF4;
        let more = s + 1u < steps;
        if more {
            // (s + 1) · 8 < k here, so it does not overflow.
            let k_next = (s + 1u) * BK;
            ra = load_a(row0 + a_r, k_next + a_k);
            rb = load_b(k_next + b_k, col0 + b_c4 * 4u);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let row = cur + kk * ROW4;
            let sw = kk & 4u;
            let a_lo = a_vec4(row + (ty ^ sw));
            let a_hi = a_vec4(row + 16u + (ty ^ sw));
            let b_lo = bs[row + tx];
            let b_hi = bs[row + 16u + tx];
            acc[0] = fma(vec4<f32>(a_lo.x), b_lo, acc[0]);
            acc[1] = fma(vec4<f32>(a_lo.x), b_hi, acc[1]);
            acc[2] = fma(vec4<f32>(a_lo.y), b_lo, acc[2]);
            acc[3] = fma(vec4<f32>(a_lo.y), b_hi, acc[3]);
            acc[4] = fma(vec4<f32>(a_lo.z), b_lo, acc[4]);
            acc[5] = fma(vec4<f32>(a_lo.z), b_hi, acc[5]);
            acc[6] = fma(vec4<f32>(a_lo.w), b_lo, acc[6]);
            acc[7] = fma(vec4<f32>(a_lo.w), b_hi, acc[7]);
            acc[8] = fma(vec4<f32>(a_hi.x), b_lo, acc[8]);
            acc[9] = fma(vec4<f32>(a_hi.x), b_hi, acc[9]);
            acc[10] = fma(vec4<f32>(a_hi.y), b_lo, acc[10]);
            acc[11] = fma(vec4<f32>(a_hi.y), b_hi, acc[11]);
            acc[12] = fma(vec4<f32>(a_hi.z), b_lo, acc[12]);
            acc[13] = fma(vec4<f32>(a_hi.z), b_hi, acc[13]);
            acc[14] = fma(vec4<f32>(a_hi.w), b_lo, acc[14]);
            acc[15] = fma(vec4<f32>(a_hi.w), b_hi, acc[15]);
        }
        if more {
            // The other buffer was last read in step s - 1, before the barrier that ended it.
            let next = BUF4 - cur;
            for (var i = 0u; i < 4u; i++) {
                as_t[4u * (next + (a_k + i) * ROW4 + a_slot) + a_comp] = ra[i];
            }
            bs[next + b_k * ROW4 + b_c4] = rb;
        }
        workgroupBarrier();
    }

    // acc[2·i + h] holds row (i < 4 ? ty·4 + i : 64 + ty·4 + i - 4), columns h·64 + tx·4..+4.
    for (var i = 0u; i < 8u; i++) {
        let r = row0 + (i / 4u) * 64u + ty * 4u + i % 4u;
        if r < dims.m {
            for (var h = 0u; h < 2u; h++) {
                let col = col0 + h * 64u + tx * 4u;
                let v = acc[2u * i + h];
                for (var j = 0u; j < 4u; j++) {
                    if col + j < dims.n {
                        c[r * dims.n + col + j] = v[j];
                    }
                }
            }
        }
    }
}

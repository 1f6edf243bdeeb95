// In bounds: each index is checked against its array's length before use (input: the loop and the fast-path test or a per-load guard, len < 2^30 so sums < 2^31; partials: arrayLength guard; scratch: lid < 256, lid + s < 256), and each scratch slot is written before any barrier reads it.
// reduce_sum: two-stage f32 sum. Stage `partial` folds a grid-stride series of blocks per
// workgroup into partials[workgroup]; stage `finish` (one workgroup) folds the partials into
// total[0]. A block is 1024 vec4s (16 KiB): invocation t reads vec4s t, t + 256, t + 512, t + 768
// of it, all four loads issued before they are added, so four 16-byte loads are in flight per
// invocation and each load instruction is coalesced; block b goes to workgroup b mod groups.
// Each invocation adds its four vec4s pairwise, then into its accumulator, and the 256-wide tree
// reduction in workgroup memory keeps the f32 rounding error near log2(n) ulps.

@group(0) @binding(0) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> total: array<f32>;

const WG: u32 = 256u;
const BLOCK: u32 = 4u * WG;
var<workgroup> scratch: array<f32, WG>;

fn tree(lid: u32) {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if lid < s {
            scratch[lid] += scratch[lid + s];
        }
    }
}

@compute @workgroup_size(256)
fn partial(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let len = arrayLength(&input);
    let stride = groups.x * BLOCK;
    var acc = vec4<f32>(0.0);
    for (var i = wid.x * BLOCK + lid; i < len; i += stride) {
        if i + 3u * WG < len {
            let a = input[i];
            let b = input[i + WG];
            let c = input[i + 2u * WG];
            let d = input[i + 3u * WG];
            acc += (a + b) + (c + d);
        } else {
            // The block's tail: i < len holds, the rest is checked one by one.
            var t = input[i];
            if i + WG < len {
                t += input[i + WG];
            }
            if i + 2u * WG < len {
                t += input[i + 2u * WG];
            }
            acc += t;
        }
    }
    scratch[lid] = (acc.x + acc.y) + (acc.z + acc.w);
    tree(lid);
    if lid == 0u && wid.x < arrayLength(&partials) {
        partials[wid.x] = scratch[0];
    }
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) lid: u32) {
    let len = arrayLength(&partials);
    var acc = 0.0;
    for (var i = lid; i < len; i += WG) {
        acc += partials[i];
    }
    scratch[lid] = acc;
    tree(lid);
    if lid == 0u {
        total[0] = scratch[0];
    }
}

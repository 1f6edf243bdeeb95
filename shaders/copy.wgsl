// In bounds: every index is checked against len = min of both arrays' lengths before use (the loop, then the fast-path test or a per-copy guard); len < 2^30 (n < 2^32 f32s) and stride < 2^26, so no u32 sum wraps.
// copy: stream copy of vec4<f32>, dst = src. Bandwidth counted as bytes read + bytes written.
// Each workgroup step covers a block of 1024 vec4s (16 KiB): invocation t copies vec4s
// t, t + 256, t + 512, t + 768 of it, issuing all four loads before any store, so four 16-byte
// loads are in flight per invocation and every load instruction is coalesced across the
// subgroup. Blocks are dealt out grid-stride (block b goes to workgroup b mod groups), so one
// dispatch covers any length; a block cut short by the end of the buffer takes the guarded path.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

const WG: u32 = 256u;
const BLOCK: u32 = 4u * WG;

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let len = min(arrayLength(&src), arrayLength(&dst));
    let stride = groups.x * BLOCK;
    for (var i = wid.x * BLOCK + lid; i < len; i += stride) {
        if i + 3u * WG < len {
            let a = src[i];
            let b = src[i + WG];
            let c = src[i + 2u * WG];
            let d = src[i + 3u * WG];
            dst[i] = a;
            dst[i + WG] = b;
            dst[i + 2u * WG] = c;
            dst[i + 3u * WG] = d;
        } else {
            // The block's tail: i < len holds, the rest is checked one by one (i + 3·256 ≥ len).
            dst[i] = src[i];
            if i + WG < len {
                dst[i + WG] = src[i + WG];
            }
            if i + 2u * WG < len {
                dst[i + 2u * WG] = src[i + 2u * WG];
            }
        }
    }
}

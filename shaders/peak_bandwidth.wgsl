// In bounds: src and sink indices are checked against their own array's length before use (the loop, then the fast-path test or a per-vec4 guard; lengths < 2^30, strides < 2^26, so no u32 sum wraps); out[gid] is guarded by arrayLength(out).
// peak_bandwidth: the device's stream ceiling, the best of three access patterns over n f32s, each
// moving exactly 4·n bytes once. The workload times every entry point for a few dispatches when it
// prepares, keeps the fastest for the measurement and names it in the verification.
//   `read_strided`  grid-stride, one vec4 per invocation and round, folded with max into one word
//                   per invocation (a persistent grid of at most 1024 workgroups).
//   `read_blocked`  blocks of 1024 vec4s as in `copy`: four coalesced 16-byte loads in flight per
//                   invocation, max-folded, one word per invocation (a block per workgroup).
//   `write_blocked` the same blocks written: sink vec4 i = (4i, 4i + 1, 4i + 2, 4i + 3) as u32s.
// The reads write one word per invocation (not counted), so their traffic is reads alone; max is
// exact and the index pattern is too, so the CPU checks every word written.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> sink: array<vec4<u32>>;

const WG: u32 = 256u;
const BLOCK: u32 = 4u * WG;

fn fold(m: vec4<f32>) -> f32 {
    return max(max(m.x, m.y), max(m.z, m.w));
}

@compute @workgroup_size(256)
fn read_strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * WG;
    let len = arrayLength(&src);
    var m = vec4<f32>(-3.0e38);
    for (var i = gid.x; i < len; i += stride) {
        m = max(m, src[i]);
    }
    if gid.x < arrayLength(&out) {
        out[gid.x] = fold(m);
    }
}

@compute @workgroup_size(256)
fn read_blocked(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let len = arrayLength(&src);
    let stride = groups.x * BLOCK;
    var m = vec4<f32>(-3.0e38);
    for (var i = wid.x * BLOCK + lid; i < len; i += stride) {
        if i + 3u * WG < len {
            let a = src[i];
            let b = src[i + WG];
            let c = src[i + 2u * WG];
            let d = src[i + 3u * WG];
            m = max(m, max(max(a, b), max(c, d)));
        } else {
            m = max(m, src[i]);
            if i + WG < len {
                m = max(m, src[i + WG]);
            }
            if i + 2u * WG < len {
                m = max(m, src[i + 2u * WG]);
            }
        }
    }
    if gid.x < arrayLength(&out) {
        out[gid.x] = fold(m);
    }
}

@compute @workgroup_size(256)
fn write_blocked(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let len = arrayLength(&sink);
    let stride = groups.x * BLOCK;
    let lanes = vec4<u32>(0u, 1u, 2u, 3u);
    for (var i = wid.x * BLOCK + lid; i < len; i += stride) {
        if i + 3u * WG < len {
            sink[i] = vec4<u32>(4u * i) + lanes;
            sink[i + WG] = vec4<u32>(4u * (i + WG)) + lanes;
            sink[i + 2u * WG] = vec4<u32>(4u * (i + 2u * WG)) + lanes;
            sink[i + 3u * WG] = vec4<u32>(4u * (i + 3u * WG)) + lanes;
        } else {
            sink[i] = vec4<u32>(4u * i) + lanes;
            if i + WG < len {
                sink[i + WG] = vec4<u32>(4u * (i + WG)) + lanes;
            }
            if i + 2u * WG < len {
                sink[i + 2u * WG] = vec4<u32>(4u * (i + 2u * WG)) + lanes;
            }
        }
    }
}

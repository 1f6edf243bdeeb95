// reduce_max: two-stage f32 maximum, shaped like reduce_sum. Stage `partial` folds a grid-stride
// slice of vec4s per workgroup into partials[workgroup]; stage `finish` (one workgroup) folds the
// partials into total[0]. max is exact, so the result must equal the CPU's bit for bit.

@group(0) @binding(0) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> total: array<f32>;

const WG: u32 = 256u;
var<workgroup> scratch: array<f32, WG>;

fn tree(lid: u32) {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if lid < s {
            scratch[lid] = max(scratch[lid], scratch[lid + s]);
        }
    }
}

@compute @workgroup_size(256)
fn partial(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let stride = groups.x * WG;
    let len = arrayLength(&input);
    var acc = vec4<f32>(-3.40282347e38);
    for (var i = gid.x; i < len; i += stride) {
        acc = max(acc, input[i]);
    }
    scratch[lid] = max(max(acc.x, acc.y), max(acc.z, acc.w));
    tree(lid);
    if lid == 0u {
        partials[wid.x] = scratch[0];
    }
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) lid: u32) {
    let len = arrayLength(&partials);
    var acc = -3.40282347e38;
    for (var i = lid; i < len; i += WG) {
        acc = max(acc, partials[i]);
    }
    scratch[lid] = acc;
    tree(lid);
    if lid == 0u {
        total[0] = scratch[0];
    }
}

// peak_bandwidth: the device's stream-read ceiling. Each invocation folds a grid-stride slice
// of vec4<f32>s with max (one cheap op per load; the loop has no other dependency, so compilers
// keep several loads in flight) and writes one word, so the traffic is reads alone. Max is
// exact, so the CPU checks every output.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    let len = arrayLength(&src);
    var m = vec4<f32>(-3.0e38);
    for (var i = gid.x; i < len; i += stride) {
        m = max(m, src[i]);
    }
    out[gid.x] = max(max(m.x, m.y), max(m.z, m.w));
}

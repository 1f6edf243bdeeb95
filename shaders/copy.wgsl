// copy: stream copy of vec4<f32>, dst = src. Bandwidth counted as bytes read + bytes written.
// Grid-stride loop so one dispatch of at most 65535 workgroups covers any length.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    let len = arrayLength(&dst);
    for (var i = gid.x; i < len; i += stride) {
        dst[i] = src[i];
    }
}

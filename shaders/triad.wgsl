// triad: a = b + s·c over vec4<f32> (STREAM triad; optimizer updates). Bandwidth counts two
// reads and one write per element. Grid-stride, like copy.

struct Params { s: f32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> a: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    let len = arrayLength(&a);
    for (var i = gid.x; i < len; i += stride) {
        a[i] = b[i] + params.s * c[i];
    }
}

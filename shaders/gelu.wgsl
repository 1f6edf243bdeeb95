// gelu: y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) over vec4<f32>, the tanh form of GELU
// (PyTorch `approximate="tanh"`). Bandwidth counts one read and one write per element.

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;

const SQRT_2_OVER_PI: f32 = 0.7978845608;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    let len = arrayLength(&y);
    for (var i = gid.x; i < len; i += stride) {
        let v = x[i];
        let inner = SQRT_2_OVER_PI * (v + 0.044715 * v * v * v);
        y[i] = 0.5 * v * (1.0 + tanh(inner));
    }
}

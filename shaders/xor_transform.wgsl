// xor_transform: a catalytic computation. The auxiliary buffer `aux` holds someone else's data; the
// kernel may borrow it as workspace but must hand it back bit-exactly.
//   `transform` (run twice): aux ^= mix(x ^ key)   — XOR is an involution, so the second run restores aux
//   `consume`   (between):   out  = aux + x        — a result that depends on the borrowed, transformed aux
// The check is twofold: `out` matches the CPU and `aux` equals its original contents.

struct Params { key: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> aux: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<u32>>;

// An odd multiplier is a bijection on u32: cheap, so the kernel stays bandwidth-bound.
fn mix(v: vec4<u32>) -> vec4<u32> {
    return (v ^ vec4<u32>(params.key)) * 0x9E3779B1u;
}

@compute @workgroup_size(256)
fn transform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    let len = arrayLength(&aux);
    for (var i = gid.x; i < len; i += stride) {
        aux[i] = aux[i] ^ mix(x[i]);
    }
}

@compute @workgroup_size(256)
fn consume(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * 256u;
    let len = arrayLength(&out);
    for (var i = gid.x; i < len; i += stride) {
        out[i] = aux[i] + x[i];
    }
}

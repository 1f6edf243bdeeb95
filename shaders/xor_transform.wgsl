// In bounds: every index is checked against len = min of the arrays' lengths before use (the loop, then the fast-path test or a per-vec4 guard); len < 2^30 (n < 2^32 words) and stride < 2^26, so no u32 sum wraps.
// xor_transform: a catalytic computation. The auxiliary buffer `aux` holds someone else's data; the
// kernel may borrow it as workspace but must hand it back bit-exactly.
//   `transform` (run twice): aux ^= mix(x ^ key)   — XOR is an involution, so the second run restores aux
//   `consume`   (between):   out  = aux + x        — a result that depends on the borrowed, transformed aux
// The check is twofold: `out` matches the CPU and `aux` equals its original contents.
// Both entry points walk blocks of 1024 vec4s like `copy`: invocation t handles vec4s t, t + 256,
// t + 512, t + 768 of a block, issuing all eight loads before any store (eight 16-byte loads in
// flight, each load instruction coalesced); block b goes to workgroup b mod groups, and a block cut
// short by the end of the buffers takes the guarded path.

struct Params { key: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> aux: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<u32>>;

const WG: u32 = 256u;
const BLOCK: u32 = 4u * WG;

// An odd multiplier is a bijection on u32: cheap, so the kernel stays bandwidth-bound.
fn mix(v: vec4<u32>) -> vec4<u32> {
    return (v ^ vec4<u32>(params.key)) * 0x9E3779B1u;
}

@compute @workgroup_size(256)
fn transform(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let len = min(arrayLength(&aux), arrayLength(&x));
    let stride = groups.x * BLOCK;
    for (var i = wid.x * BLOCK + lid; i < len; i += stride) {
        if i + 3u * WG < len {
            let a0 = aux[i];
            let a1 = aux[i + WG];
            let a2 = aux[i + 2u * WG];
            let a3 = aux[i + 3u * WG];
            let x0 = x[i];
            let x1 = x[i + WG];
            let x2 = x[i + 2u * WG];
            let x3 = x[i + 3u * WG];
            aux[i] = a0 ^ mix(x0);
            aux[i + WG] = a1 ^ mix(x1);
            aux[i + 2u * WG] = a2 ^ mix(x2);
            aux[i + 3u * WG] = a3 ^ mix(x3);
        } else {
            // The block's tail: i < len holds, the rest is checked one by one.
            aux[i] = aux[i] ^ mix(x[i]);
            if i + WG < len {
                aux[i + WG] = aux[i + WG] ^ mix(x[i + WG]);
            }
            if i + 2u * WG < len {
                aux[i + 2u * WG] = aux[i + 2u * WG] ^ mix(x[i + 2u * WG]);
            }
        }
    }
}

@compute @workgroup_size(256)
fn consume(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let len = min(min(arrayLength(&out), arrayLength(&aux)), arrayLength(&x));
    let stride = groups.x * BLOCK;
    for (var i = wid.x * BLOCK + lid; i < len; i += stride) {
        if i + 3u * WG < len {
            let a0 = aux[i];
            let a1 = aux[i + WG];
            let a2 = aux[i + 2u * WG];
            let a3 = aux[i + 3u * WG];
            let x0 = x[i];
            let x1 = x[i + WG];
            let x2 = x[i + 2u * WG];
            let x3 = x[i + 3u * WG];
            out[i] = a0 + x0;
            out[i + WG] = a1 + x1;
            out[i + 2u * WG] = a2 + x2;
            out[i + 3u * WG] = a3 + x3;
        } else {
            out[i] = aux[i] + x[i];
            if i + WG < len {
                out[i + WG] = aux[i + WG] + x[i + WG];
            }
            if i + 2u * WG < len {
                out[i + 2u * WG] = aux[i + 2u * WG] + x[i + 2u * WG];
            }
        }
    }
}

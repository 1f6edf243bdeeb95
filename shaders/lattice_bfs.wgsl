// lattice_bfs: level-synchronous, frontier-based BFS over a D-dimensional grid lattice of size^D
// vertices (neighbours ±1 along each axis), distances from one source. The host encodes
// `init`, then per level `expand` (dispatched indirectly over the current frontier) and
// `advance` (one invocation: next frontier becomes current, the indirect size is rewritten).
// Frontiers ping-pong between two buffers by swapping `cur` and `next` in the bind group.
// A vertex joins the next frontier once: only the atomicMin that sees UNSEEN appends it.
// Each entry point has its own (automatic) layout, so the indirect-argument buffer is never
// bound as storage in the dispatch that reads it.

struct Lattice { size: u32, dim: u32, vertices: u32, source: u32 }

@group(0) @binding(0) var<uniform> lattice: Lattice;
@group(0) @binding(1) var<storage, read_write> dist: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> cur: array<u32>;
@group(0) @binding(3) var<storage, read_write> next: array<u32>;
// [frontier size, next frontier size, level, unused]
@group(0) @binding(4) var<storage, read_write> state: array<atomic<u32>, 4>;
// Indirect dispatch size of `expand`: [x, y, z].
@group(0) @binding(5) var<storage, read_write> args: array<u32, 3>;

const UNSEEN: u32 = 0xffffffffu;
const WG: u32 = 256u;
const MAX_GROUPS: u32 = 65535u;

fn groups_for(count: u32) -> u32 {
    return clamp((count + WG - 1u) / WG, 1u, MAX_GROUPS);
}

@compute @workgroup_size(256)
fn init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var v = gid.x; v < lattice.vertices; v += groups.x * WG) {
        atomicStore(&dist[v], select(UNSEEN, 0u, v == lattice.source));
    }
    if gid.x == 0u {
        cur[0] = lattice.source;
        atomicStore(&state[0], 1u);
        atomicStore(&state[1], 0u);
        atomicStore(&state[2], 0u);
        args[0] = 1u;
        args[1] = 1u;
        args[2] = 1u;
    }
}

fn visit(u: u32, d: u32) {
    // The plain load skips most already-seen vertices without an atomic read-modify-write.
    if atomicLoad(&dist[u]) == UNSEEN && atomicMin(&dist[u], d) == UNSEEN {
        next[atomicAdd(&state[1], 1u)] = u;
    }
}

@compute @workgroup_size(256)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let count = atomicLoad(&state[0]);
    let d = atomicLoad(&state[2]) + 1u;
    for (var i = gid.x; i < count; i += groups.x * WG) {
        let v = cur[i];
        var stride = 1u;
        for (var axis = 0u; axis < lattice.dim; axis++) {
            let coord = (v / stride) % lattice.size;
            if coord > 0u {
                visit(v - stride, d);
            }
            if coord + 1u < lattice.size {
                visit(v + stride, d);
            }
            stride *= lattice.size;
        }
    }
}

@compute @workgroup_size(1)
fn advance() {
    let count = atomicExchange(&state[1], 0u);
    atomicStore(&state[0], count);
    atomicAdd(&state[2], 1u);
    args[0] = groups_for(count);
}

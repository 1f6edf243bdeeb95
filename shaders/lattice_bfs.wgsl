// In bounds: vertices are < size^dim = `vertices` (host: below 2^32) and only ±size^axis steps
// that stay in the lattice are taken; `cur` is read below the frontier size, and each vertex is
// appended once (one winning atomicMin), so next-frontier slots stay below `vertices`.
//
// lattice_bfs: level-synchronous, frontier-based BFS over a D-dimensional grid lattice of size^D
// vertices (neighbours ±1 along each axis), distances from one source. The host encodes
// `init`, then per level `expand` (dispatched indirectly over the current frontier) and
// `advance` (one invocation: next frontier becomes current, the indirect size is rewritten).
// Frontiers ping-pong between two buffers by swapping `cur` and `next` in the bind group.
// A vertex joins the next frontier once: only the atomicMin that sees UNSEEN claims it. Each
// invocation expands one frontier vertex, keeping its claims as a direction bitmask; the
// subgroup then reserves next-frontier slots for all its claims with one atomicAdd
// (subgroupExclusiveAdd gives each lane its offset) and each lane writes its claims there.
// Each entry point has its own (automatic) layout, so the indirect-argument buffer is never
// bound as storage in the dispatch that reads it.
//
// Needs SUBGROUP (naga 30 takes subgroup builtins without an `enable`; it rejects
// `enable subgroups;`). Without it, lattice_bfs.rs builds the fallback source from this file: it
// drops the lines from `// subgroup-begin` to `// subgroup-end` and uncomments the
// `//fallback: ` lines (so this file, which the kernel hash covers, holds both).

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
    // ⌈count / WG⌉ without count + WG − 1 overflowing.
    return clamp(count / WG + select(0u, 1u, count % WG != 0u), 1u, MAX_GROUPS);
}

@compute @workgroup_size(256)
fn init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let step = groups.x * WG;
    var v = gid.x;
    while v < lattice.vertices {
        atomicStore(&dist[v], select(UNSEEN, 0u, v == lattice.source));
        // Stops before v + step could wrap around.
        if lattice.vertices - v <= step {
            break;
        }
        v += step;
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

// Whether this invocation claimed vertex u at distance d: only the atomicMin that sees UNSEEN
// does. The plain load skips most already-seen vertices without an atomic read-modify-write.
fn claim(u: u32, d: u32) -> bool {
    return atomicLoad(&dist[u]) == UNSEEN && atomicMin(&dist[u], d) == UNSEEN;
}

// subgroup-begin
// The first next-frontier slot of this invocation's `n` discoveries (`lane`: its
// subgroup_invocation_id). Every lane of the subgroup calls it in the same (workgroup-uniform)
// loop iteration: one atomicAdd per subgroup, by the lowest active lane (naga has no
// subgroupElect: it is the lane subgroupBroadcastFirst reads), whose result
// subgroupBroadcastFirst then hands to the others.
fn reserve(n: u32, lane: u32) -> u32 {
    let offset = subgroupExclusiveAdd(n);
    let total = subgroupAdd(n);
    var first = 0u;
    if lane == subgroupBroadcastFirst(lane) && total > 0u {
        first = atomicAdd(&state[1], total);
    }
    return subgroupBroadcastFirst(first) + offset;
}
// subgroup-end
//fallback: // Without SUBGROUP: one atomicAdd per invocation that discovered anything.
//fallback: fn reserve(n: u32, lane: u32) -> u32 {
//fallback:     if n == 0u {
//fallback:         return 0u;
//fallback:     }
//fallback:     return atomicAdd(&state[1], n);
//fallback: }

@compute @workgroup_size(256)
fn expand(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    // subgroup-begin
    @builtin(subgroup_invocation_id) lane: u32,
    // subgroup-end
) {
    //fallback: let lane = 0u;
    let count = atomicLoad(&state[0]);
    let d = atomicLoad(&state[2]) + 1u;
    // The loop runs the same iterations in the whole workgroup (`start` and `count` are the same
    // in every invocation), so every lane reaches `reserve`; invocations past the frontier take
    // part with no discoveries. The exit test avoids start + step overflowing.
    let step = groups.x * WG;
    var start = wid.x * WG;
    while start < count {
        var v = 0u;
        // Bit 2·axis: the neighbour at −size^axis was claimed; bit 2·axis+1: the one at +size^axis
        // (dim ≤ 16, so 32 bits hold every direction).
        var found = 0u;
        if lid < count - start {
            v = cur[start + lid];
            var stride = 1u;
            for (var axis = 0u; axis < lattice.dim; axis++) {
                let coord = (v / stride) % lattice.size;
                if coord > 0u && claim(v - stride, d) {
                    found |= 1u << (2u * axis);
                }
                if coord + 1u < lattice.size && claim(v + stride, d) {
                    found |= 2u << (2u * axis);
                }
                stride *= lattice.size;
            }
        }
        var slot = reserve(countOneBits(found), lane);
        // Write the claimed neighbours, lowest direction first, recomputing each one's stride.
        var axis = 0u;
        var stride = 1u;
        while found != 0u {
            let bit = firstTrailingBit(found);
            found &= found - 1u;
            for (; axis < bit / 2u; axis++) {
                stride *= lattice.size;
            }
            next[slot] = select(v + stride, v - stride, bit % 2u == 0u);
            slot++;
        }
        if count - start <= step {
            break;
        }
        start += step;
    }
}

@compute @workgroup_size(1)
fn advance() {
    let count = atomicExchange(&state[1], 0u);
    atomicStore(&state[0], count);
    atomicAdd(&state[2], 1u);
    args[0] = groups_for(count);
}

//! `lattice_bfs`: level-synchronous, frontier-based BFS over a D-dimensional grid lattice of
//! size^D vertices from its centre (the platform's lattice searches). Verified against a CPU BFS;
//! reports GTEPS over the lattice's undirected edges, as Graph500 counts them.
//!
//! Unlike the fixed-dispatch kernels, one iteration is `init` then, per level, an indirect
//! `expand` and an `advance`, with the frontier buffers swapped each level; so it has its own
//! [`Prepared`].
//!
//! `expand` reserves next-frontier slots with one atomic per subgroup (SUBGROUP). On an adapter
//! without SUBGROUP it runs [`fallback_source`] instead: the same shader with one atomic per
//! invocation, derived from the one shader file so the kernel hash covers both.

use std::sync::OnceLock;

use rand::rngs::StdRng;

use super::launch::u32s;
use super::{param, Kernel, Param, Params, Prepared, Unit, Verification, Work, U32};
use crate::device::Gpu;
use crate::error::{Error, Result};

pub struct LatticeBfs;

const NAME: &str = "lattice_bfs";
const UNSEEN: u32 = u32::MAX;
const SHADER: &str = include_str!("../../shaders/lattice_bfs.wgsl");

/// The shader without subgroup operations, for adapters without SUBGROUP: the shader file with
/// its `// subgroup-begin` … `// subgroup-end` lines dropped and its `//fallback: ` lines
/// uncommented (the shader's header says so too).
pub fn fallback_source() -> &'static str {
    static FALLBACK: OnceLock<String> = OnceLock::new();
    FALLBACK.get_or_init(|| {
        let mut out = String::with_capacity(SHADER.len());
        let mut subgroup_only = false;
        for line in SHADER.lines() {
            match line.trim() {
                "// subgroup-begin" => subgroup_only = true,
                "// subgroup-end" => subgroup_only = false,
                _ if !subgroup_only => {
                    // `<indent>//fallback: code` becomes `<indent>code`.
                    let indent = &line[..line.len() - line.trim_start().len()];
                    match line.trim_start().strip_prefix("//fallback:") {
                        Some(code) => {
                            out.push_str(indent);
                            out.push_str(code.strip_prefix(' ').unwrap_or(code));
                        }
                        None => out.push_str(line),
                    }
                    out.push('\n');
                }
                _ => {}
            }
        }
        out
    })
}

/// The `expand` source this adapter runs: subgroup-aggregated where it has SUBGROUP.
fn source(gpu: &Gpu) -> &'static str {
    if gpu.features.contains(wgpu::Features::SUBGROUP) {
        SHADER
    } else {
        fallback_source()
    }
}

/// A lattice of `size^dim` vertices; vertex index = Σ coord[axis]·size^axis.
#[derive(Clone, Copy, Debug)]
pub struct Lattice {
    pub dim: u32,
    pub size: u32,
}

impl Lattice {
    pub fn vertices(&self) -> u64 {
        u64::from(self.size).pow(self.dim)
    }
    /// Undirected edges: along each axis, size−1 per line of size^(dim−1) lines.
    pub fn edges(&self) -> u64 {
        u64::from(self.dim) * u64::from(self.size).pow(self.dim - 1) * u64::from(self.size - 1)
    }
    /// The source: the centre vertex, (size/2, …, size/2).
    pub fn source(&self) -> u32 {
        (0..self.dim).fold(0, |acc, _| acc * self.size + self.size / 2)
    }
    /// BFS levels from the source: its farthest vertex is a corner.
    pub fn levels(&self) -> u32 {
        self.dim * (self.size - 1 - self.size / 2).max(self.size / 2)
    }
}

fn lattice(params: &Params) -> Result<Lattice> {
    let dim = params.get(NAME, "dim")?;
    let size = params.get(NAME, "size")?;
    let vertices = size.checked_pow(dim as u32).unwrap_or(u64::MAX);
    if dim > 16 || vertices >= u64::from(u32::MAX) {
        return Err(Error::Usage(format!(
            "{}: size^dim must be below 2^32 vertices (dim at most 16)",
            super::instance_key(NAME, params)
        )));
    }
    Ok(Lattice {
        dim: dim as u32,
        size: size as u32,
    })
}

impl Kernel for LatticeBfs {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "level-synchronous frontier BFS on a D-dimensional grid lattice, next-frontier slots reserved per subgroup (catalytic); GTEPS"
    }
    fn unit(&self) -> Unit {
        Unit::Teps
    }
    /// The subgroup form; the fallback is derived from it ([`fallback_source`]).
    fn shader(&self) -> &'static str {
        SHADER
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("dim", 1, 16), param("size", 1, U32)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let l = lattice(params)?;
        let (v, e) = (l.vertices(), l.edges());
        Ok(Work {
            // init and final distance writes, frontier write and read, and a distance read per
            // directed edge: 4 bytes each.
            bytes: 4 * (4 * v + 2 * e),
            flops: 0,
            edges: e,
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        Ok(3 * 4 * lattice(params)?.vertices())
    }
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        Ok(4 * lattice(params)?.vertices())
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        _rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        prepare_with(gpu, params, slots, source(gpu))
    }
}

/// [`Kernel::prepare`] with the given shader source (the tests run the fallback on any adapter).
fn prepare_with(
    gpu: &Gpu,
    params: &Params,
    slots: usize,
    source: &str,
) -> Result<Box<dyn Prepared>> {
    let l = lattice(params)?;
    let v = l.vertices();
    super::fits_device(gpu, &LatticeBfs, params)?;
    let [init, expand, advance] =
        super::auto_pipelines(gpu, NAME, source, ["init", "expand", "advance"]);
    let uniform = super::uniform_buffer(
        gpu,
        "lattice_bfs.lattice",
        &[l.size, l.dim, v as u32, l.source()],
    );
    // The same lattice and source in every slot: the distances do not depend on the inputs,
    // so a cold start only needs fresh (poisoned) buffers.
    let want = reference::bfs(l);
    let bind = |pipeline: &wgpu::ComputePipeline, buffers: &[(u32, &wgpu::Buffer)]| {
        let entries: Vec<_> = buffers
            .iter()
            .map(|&(binding, b)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            })
            .collect();
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(NAME),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    };
    let sets = (0..slots)
        .map(|_| {
            let dist = super::poisoned_buffer(gpu, "lattice_bfs.dist", 4 * v);
            let front_a = super::poisoned_buffer(gpu, "lattice_bfs.frontier_a", 4 * v);
            let front_b = super::poisoned_buffer(gpu, "lattice_bfs.frontier_b", 4 * v);
            let state = super::poisoned_buffer(gpu, "lattice_bfs.state", 16);
            let args = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("lattice_bfs.args"),
                size: 12,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::INDIRECT,
                mapped_at_creation: false,
            });
            BfsSet {
                init: bind(
                    &init,
                    &[
                        (0, &uniform),
                        (1, &dist),
                        (2, &front_a),
                        (4, &state),
                        (5, &args),
                    ],
                ),
                expand: [(&front_a, &front_b), (&front_b, &front_a)].map(|(cur, next)| {
                    bind(
                        &expand,
                        &[(0, &uniform), (1, &dist), (2, cur), (3, next), (4, &state)],
                    )
                }),
                advance: bind(&advance, &[(4, &state), (5, &args)]),
                dist,
                args,
            }
        })
        .collect();
    Ok(Box::new(BfsRun {
        pipelines: [init, expand, advance],
        sets,
        init_groups: super::grid_groups(gpu, v, 256, 65535),
        levels: l.levels(),
        want,
    }))
}

struct BfsSet {
    init: wgpu::BindGroup,
    /// Expand with frontier A → B (even levels) and B → A (odd levels).
    expand: [wgpu::BindGroup; 2],
    advance: wgpu::BindGroup,
    dist: wgpu::Buffer,
    args: wgpu::Buffer,
}

struct BfsRun {
    /// `init`, `expand`, `advance`.
    pipelines: [wgpu::ComputePipeline; 3],
    sets: Vec<BfsSet>,
    init_groups: u32,
    levels: u32,
    want: Vec<u32>,
}

impl Prepared for BfsRun {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        let [init, expand, advance] = &self.pipelines;
        let set = &self.sets[slot];
        pass.set_pipeline(init);
        pass.set_bind_group(0, &set.init, &[]);
        pass.dispatch_workgroups(self.init_groups, 1, 1);
        for level in 0..self.levels as usize {
            pass.set_pipeline(expand);
            pass.set_bind_group(0, &set.expand[level % 2], &[]);
            pass.dispatch_workgroups_indirect(&set.args, 0);
            pass.set_pipeline(advance);
            pass.set_bind_group(0, &set.advance, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
    }

    fn verify(&self, gpu: &Gpu) -> Result<Verification> {
        let mut parts = Vec::with_capacity(self.sets.len());
        for set in &self.sets {
            let got: Vec<u32> = u32s(&super::read_back::<u8>(gpu, NAME, &set.dist)?);
            parts.push(super::compare_exact("dist", &got, &self.want));
        }
        Ok(Verification::all(parts))
    }
}

/// CPU reference: a queue-based BFS over the same lattice and neighbour rule.
pub mod reference {
    use std::collections::VecDeque;

    use super::{Lattice, UNSEEN};

    pub fn bfs(l: Lattice) -> Vec<u32> {
        let mut dist = vec![UNSEEN; l.vertices() as usize];
        let mut queue = VecDeque::from([l.source() as usize]);
        dist[l.source() as usize] = 0;
        let size = l.size as usize;
        while let Some(v) = queue.pop_front() {
            let mut stride = 1;
            for _ in 0..l.dim {
                let coord = (v / stride) % size;
                let neighbours = [
                    (coord > 0).then(|| v - stride),
                    (coord + 1 < size).then(|| v + stride),
                ];
                for u in neighbours.into_iter().flatten() {
                    if dist[u] == UNSEEN {
                        dist[u] = dist[v] + 1;
                        queue.push_back(u);
                    }
                }
                stride *= size;
            }
        }
        dist
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse and validate `source` with naga as tests/it/shaders.rs does, with `capabilities`.
    fn validate(source: &str, capabilities: naga::valid::Capabilities) -> Result<(), String> {
        let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
            .validate(&module)
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }

    /// The fallback is the shader minus its subgroup parts: it validates without the SUBGROUP
    /// capability (and the subgroup form does not), and it keeps every entry point.
    #[test]
    fn the_fallback_source_validates_without_subgroups() {
        use naga::valid::Capabilities as C;
        let without = C::all() - C::SUBGROUP - C::SUBGROUP_BARRIER - C::SUBGROUP_VERTEX_STAGE;
        let fallback = fallback_source();
        validate(fallback, without).unwrap_or_else(|e| panic!("fallback: {e}\n{fallback}"));
        validate(SHADER, C::all()).unwrap();
        assert!(validate(SHADER, without).is_err());
        for op in [
            "subgroupExclusiveAdd(",
            "subgroupAdd(",
            "subgroupElect(",
            "subgroupBroadcast",
        ] {
            assert!(!fallback.contains(op), "{op} in\n{fallback}");
        }
        assert!(fallback.contains("return atomicAdd(&state[1], n);"));
        for entry in ["fn init(", "fn expand(", "fn advance(", "fn reserve("] {
            assert_eq!(fallback.matches(entry).count(), 1, "{entry}");
        }
    }

    /// The fallback on this adapter (which may well have SUBGROUP, so the kernel tests run the
    /// subgroup form) against the CPU BFS, including frontiers of many subgroups.
    #[test]
    fn the_fallback_matches_the_cpu_bfs() {
        let gpu = Gpu::open(&crate::device::AdapterChoice::default())
            .expect("tests need an adapter (CI installs lavapipe)");
        for (dim, size) in [(1, 1), (1, 100), (2, 33), (3, 30), (5, 4)] {
            let params = Params::new([("dim", dim), ("size", size)]);
            let prepared = gpu
                .scoped(NAME, || prepare_with(&gpu, &params, 2, fallback_source()))
                .unwrap();
            crate::runner::execute_once(&gpu, prepared.as_ref(), 2).unwrap();
            let v = prepared.verify(&gpu).unwrap();
            assert!(v.ok, "dim {dim} size {size}: {}", v.detail);
        }
    }

    /// On a grid lattice the BFS distance is the L1 distance to the source: the reference agrees.
    #[test]
    fn cpu_bfs_distances_are_l1_distances_to_the_centre() {
        for (dim, size) in [(1, 7), (2, 5), (3, 4), (4, 3)] {
            let l = Lattice { dim, size };
            let dist = reference::bfs(l);
            let coords = |v: u32| (0..dim).map(move |a| (v / size.pow(a)) % size);
            for (v, &d) in dist.iter().enumerate() {
                let l1: u32 = coords(v as u32)
                    .zip(coords(l.source()))
                    .map(|(x, s)| x.abs_diff(s))
                    .sum();
                assert_eq!(d, l1, "dim {dim} size {size} vertex {v}");
            }
            assert_eq!(*dist.iter().max().unwrap(), l.levels());
            // Edges: each vertex's neighbour count, summed, counts every edge twice.
            let degrees: u64 = (0..l.vertices() as u32)
                .map(|v| {
                    coords(v)
                        .map(|c| u64::from(c > 0) + u64::from(c + 1 < size))
                        .sum::<u64>()
                })
                .sum();
            assert_eq!(degrees, 2 * l.edges());
        }
    }
}

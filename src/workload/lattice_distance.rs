//! `lattice_distance`: pairwise L1 and L2 distances between two batches of points on a
//! D-dimensional lattice (the platform's nearest-neighbour and kernel evaluations). GB/s of the
//! two distance matrices written plus the points read.

use rand::rngs::StdRng;
use rand::Rng;

use super::launch::{f32s, u32s, Launch, Set};
use super::{param, size, Kernel, Param, Params, Prepared, Unit, Verification, Work, U32};
use crate::device::Gpu;
use crate::error::{Error, Result};

pub struct LatticeDistance;

const NAME: &str = "lattice_distance";
/// Output tile of one workgroup, per side (the shader's TILE).
const TILE: u64 = 64;
/// Dimensions the shader stages per point.
const MAX_DIM: u64 = 8;
/// Coordinate range: beyond it even one dimension's squared distance exceeds 2^24.
const MAX_SIZE: u64 = 4097;

struct Dims {
    m: u64,
    n: u64,
    dim: u64,
    size: u64,
}

fn dims(params: &Params) -> Result<Dims> {
    let d = Dims {
        m: params.get(NAME, "m")?,
        n: params.get(NAME, "n")?,
        dim: params.get(NAME, "dim")?,
        size: params.get(NAME, "size")?,
    };
    // The squared distance must be exact in f32 before the square root: below 2^24. (`size` is
    // at most MAX_SIZE, `dim` at most MAX_DIM, so this cannot overflow.)
    if d.dim * (d.size - 1).pow(2) >= 1 << 24 {
        return Err(Error::Usage(format!(
            "{}: dim must be at most {MAX_DIM} and dim·(size−1)² below 2^24",
            super::instance_key(NAME, params)
        )));
    }
    Ok(d)
}

impl Kernel for LatticeDistance {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "pairwise L1 and L2 distances between batches of lattice points, 64×64 tiles of 4×4 register blocks (catalytic); GB/s"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/lattice_distance.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[
            param("m", 1, U32),
            param("n", 1, U32),
            param("dim", 1, MAX_DIM),
            param("size", 1, MAX_SIZE),
        ];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let d = dims(params)?;
        let pairs = size(d.m) * d.n;
        Ok(Work {
            bytes: (pairs * 2 * 4 + size(4 * d.dim) * (d.m + d.n)).get(NAME, params, "bytes")?,
            // per pair and dimension: difference, add, multiply-add; then one square root.
            flops: (pairs * (3 * d.dim + 1)).get(NAME, params, "FLOPs")?,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        let d = dims(params)?;
        (size(4) * d.m * d.n).get(NAME, params, "the m·n distance matrix")
    }
    fn workgroups(&self, params: &Params) -> Result<[u64; 3]> {
        let d = dims(params)?;
        Ok([d.n.div_ceil(TILE), d.m.div_ceil(TILE), 1])
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let d = dims(params)?;
        super::fits_device(gpu, self, params)?;
        let groups = super::dispatch_groups(self, params)?;
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["main"])?;
        let uniform = super::uniform_buffer(
            gpu,
            "lattice_distance.dims",
            &[d.m as u32, d.n as u32, d.dim as u32, 0],
        );
        let (m, n, dim) = (d.m as usize, d.n as usize, d.dim as usize);
        let sets = (0..slots)
            .map(|_| {
                let mut points = |count: u64| -> Vec<u32> {
                    (0..count * d.dim)
                        .map(|_| rng.random_range(0..d.size as u32))
                        .collect()
                };
                let (a, b) = (points(d.m), points(d.n));
                let a_buf =
                    super::input_buffer(gpu, "lattice_distance.a", bytemuck::cast_slice(&a));
                let b_buf =
                    super::input_buffer(gpu, "lattice_distance.b", bytemuck::cast_slice(&b));
                let l1_buf = super::poisoned_buffer(gpu, "lattice_distance.l1", 4 * d.m * d.n);
                let l2_buf = super::poisoned_buffer(gpu, "lattice_distance.l2", 4 * d.m * d.n);
                let bind = super::bind_group(
                    gpu,
                    &pipelines,
                    &[&uniform, &a_buf, &b_buf, &l1_buf, &l2_buf],
                );
                Set {
                    bind,
                    outputs: vec![l1_buf, l2_buf],
                    check: Box::new(move |out| {
                        let (want_l1, want_l2) = reference::distances(&a, &b, m, n, dim);
                        let tol: Vec<f64> = want_l2
                            .iter()
                            .map(|v| 4.0 * f64::from(f32::EPSILON) * v)
                            .collect();
                        Verification::all(vec![
                            super::compare_exact("l1", &u32s(&out[0]), &want_l1),
                            super::compare_f32("l2", &f32s(&out[1]), &want_l2, &tol),
                        ])
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: NAME,
            pipelines,
            steps: vec![(0, groups)],
            sets,
        }))
    }
}

/// CPU reference: exact L1 and L2 (in f64) between every pair. WGSL's `sqrt` is allowed a few
/// ulp on Vulkan, hence a 4-ulp tolerance on L2.
pub mod reference {
    pub fn distances(a: &[u32], b: &[u32], m: usize, n: usize, dim: usize) -> (Vec<u32>, Vec<f64>) {
        let mut l1 = Vec::with_capacity(m * n);
        let mut l2 = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let (mut s1, mut s2) = (0u64, 0u64);
                for k in 0..dim {
                    let diff = u64::from(a[i * dim + k].abs_diff(b[j * dim + k]));
                    s1 += diff;
                    s2 += diff * diff;
                }
                l1.push(s1 as u32);
                l2.push((s2 as f64).sqrt());
            }
        }
        (l1, l2)
    }
}

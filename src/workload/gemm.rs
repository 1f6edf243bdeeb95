//! The GEMM family (dense layers), one shader each: `sgemm` (f32, 128×128 blocks, 8×8 register
//! blocks, double-buffered tiles), `sgemm_subgroup` (64×64 tiles, 4×4 register blocks, subgroup
//! shuffles), `hgemm` (f16 inputs, f32 accumulate, 64×64 tiles) and `hgemm_coop` (f16 on
//! cooperative matrices / tensor cores, 128×256 blocks).
//! All compute row-major C = A·B and report GFLOP/s of 2·M·N·K.

use half::f16;
use rand::rngs::StdRng;
use rand::Rng;

use super::launch::{f32s, Launch, Set};
use super::{param, size, Kernel, Param, Params, Prepared, Unit, Work, U32};
use crate::device::Gpu;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Sgemm,
    SgemmSubgroup,
    Hgemm,
    HgemmCoop,
}

pub struct Gemm(pub Variant);

pub const SGEMM: Gemm = Gemm(Variant::Sgemm);
pub const SGEMM_SUBGROUP: Gemm = Gemm(Variant::SgemmSubgroup);
pub const HGEMM: Gemm = Gemm(Variant::Hgemm);
pub const HGEMM_COOP: Gemm = Gemm(Variant::HgemmCoop);

/// Above this many multiply-adds the CPU checks a random sample of C, not all of it.
const FULL_CHECK_MACS: u64 = 1 << 28;
const SAMPLED_ENTRIES: usize = 4096;

#[derive(Clone, Copy)]
struct Dims {
    m: u64,
    n: u64,
    k: u64,
}

/// hgemm_coop's workgroup memory in bytes: double-buffered f16 tiles of A (128 × (16 + 8)) and
/// B (16 × (256 + 8)), and one 16×16 f32 staging fragment per subgroup (8) for the edge-checked
/// store of C. Must match shaders/hgemm_coop.wgsl.
const HGEMM_COOP_WORKGROUP_BYTES: u32 = 2 * (2 * 128 * 24 + 2 * 16 * 264) + 4 * 8 * 256;

impl Variant {
    /// Rows × columns of the C block one workgroup computes.
    fn tile(self) -> (u64, u64) {
        match self {
            Variant::Sgemm => (128, 128),
            Variant::HgemmCoop => (128, 256),
            _ => (64, 64),
        }
    }
    fn half_inputs(self) -> bool {
        matches!(self, Variant::Hgemm | Variant::HgemmCoop)
    }
}

impl Gemm {
    fn dims(&self, params: &Params) -> Result<Dims> {
        let name = self.name();
        let d = Dims {
            m: params.get(name, "m")?,
            n: params.get(name, "n")?,
            k: params.get(name, "k")?,
        };
        // hgemm_coop masks M and N edges per element and zero-pads K, but reads rows of A and B as
        // 16-byte vectors of 8 f16 (n and k multiples of 8). The historic, stricter multiples
        // stay (baselines and corpus files use them), and every suite size meets them.
        if self.0 == Variant::HgemmCoop
            && (!d.m.is_multiple_of(32) || !d.n.is_multiple_of(32) || !d.k.is_multiple_of(16))
        {
            return Err(Error::Usage(format!(
                "{}: m and n must be multiples of 32 and k of 16",
                super::instance_key(name, params)
            )));
        }
        Ok(d)
    }
}

impl Kernel for Gemm {
    fn name(&self) -> &'static str {
        match self.0 {
            Variant::Sgemm => "sgemm",
            Variant::SgemmSubgroup => "sgemm_subgroup",
            Variant::Hgemm => "hgemm",
            Variant::HgemmCoop => "hgemm_coop",
        }
    }
    fn describe(&self) -> &'static str {
        match self.0 {
            Variant::Sgemm => "fp32 matrix multiply, 128×128 blocks, 8×8 register blocks, double-buffered tiles (dense layers); GFLOP/s",
            Variant::SgemmSubgroup => "fp32 matrix multiply sharing A through subgroup shuffles (needs SUBGROUP); GFLOP/s",
            Variant::Hgemm => "f16-input, f32-accumulate matrix multiply, 64×64 tiles (needs SHADER_F16); GFLOP/s",
            Variant::HgemmCoop => "f16-input, f32-accumulate matrix multiply on cooperative matrices / tensor cores, 128×256 blocks of 8 subgroups; GFLOP/s",
        }
    }
    fn unit(&self) -> Unit {
        Unit::Flops
    }
    fn comparable_to_ceiling(&self) -> bool {
        // Tensor cores are not f32 FMA units: hgemm_coop may rightly exceed peak_fma. hgemm
        // widens its f16 inputs and multiplies in f32.
        self.0 != Variant::HgemmCoop
    }
    fn shader(&self) -> &'static str {
        match self.0 {
            Variant::Sgemm => include_str!("../../shaders/sgemm.wgsl"),
            Variant::SgemmSubgroup => include_str!("../../shaders/sgemm_subgroup.wgsl"),
            Variant::Hgemm => include_str!("../../shaders/hgemm.wgsl"),
            Variant::HgemmCoop => include_str!("../../shaders/hgemm_coop.wgsl"),
        }
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("m", 1, U32), param("n", 1, U32), param("k", 1, U32)];
        PARAMS
    }
    fn unsupported(&self, gpu: &Gpu) -> Option<String> {
        use wgpu::Features as F;
        match self.0 {
            Variant::Sgemm => None,
            Variant::SgemmSubgroup => super::missing_features(gpu, F::SUBGROUP).or_else(|| {
                (gpu.info.subgroup_min_size < 4).then(|| {
                    format!(
                        "needs subgroups of 4+ lanes (has {})",
                        gpu.info.subgroup_min_size
                    )
                })
            }),
            Variant::Hgemm => super::missing_features(gpu, F::SHADER_F16),
            Variant::HgemmCoop => {
                let shape = gpu.cooperative_matrix.iter().any(|p| {
                    use wgpu::CooperativeScalarType as T;
                    (p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type)
                        == (16, 16, 16, T::F16, T::F32)
                });
                super::missing_features(gpu, F::SHADER_F16 | F::SUBGROUP)
                    .or_else(|| {
                        (!shape).then(|| {
                            "needs EXPERIMENTAL_COOPERATIVE_MATRIX with a 16×16×16 f16 → f32 shape".to_string()
                        })
                    })
                    .or_else(|| {
                        // The shader maps invocations 32·w..32·w + 32 to subgroup w.
                        (gpu.info.subgroup_min_size != 32 || gpu.info.subgroup_max_size != 32).then(|| {
                            format!(
                                "needs subgroups of exactly 32 lanes (has {}..={})",
                                gpu.info.subgroup_min_size, gpu.info.subgroup_max_size
                            )
                        })
                    })
                    .or_else(|| {
                        let limit = gpu.limits.max_compute_workgroup_storage_size;
                        (limit < HGEMM_COOP_WORKGROUP_BYTES).then(|| {
                            format!(
                                "needs {HGEMM_COOP_WORKGROUP_BYTES} bytes of workgroup memory (has {limit})"
                            )
                        })
                    })
            }
        }
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let (name, d) = (self.name(), self.dims(params)?);
        let element = if self.0.half_inputs() { 2 } else { 4 };
        let bytes = size(element) * (size(d.m) * d.k + size(d.k) * d.n) + size(4) * d.m * d.n;
        Ok(Work {
            bytes: bytes.get(name, params, "bytes of A, B and C")?,
            flops: (size(2) * d.m * d.n * d.k).get(name, params, "2·m·n·k FLOPs")?,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }
    fn workgroups(&self, params: &Params) -> Result<[u64; 3]> {
        let (d, (rows, cols)) = (self.dims(params)?, self.0.tile());
        Ok([d.n.div_ceil(cols), d.m.div_ceil(rows), 1])
    }
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        let (name, d) = (self.name(), self.dims(params)?);
        let mut largest = 0;
        for (what, (rows, cols)) in [("A", (d.m, d.k)), ("B", (d.k, d.n)), ("C", (d.m, d.n))] {
            largest = largest.max((size(4) * rows * cols).get(name, params, what)?);
        }
        Ok(largest)
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let name = self.name();
        let d = self.dims(params)?;
        // Each of m·k, k·n and m·n now fits the device (under 2^32 elements), so the products
        // below cannot overflow.
        super::fits_device(gpu, self, params)?;
        let groups = super::dispatch_groups(self, params)?;
        let pipelines = super::pipelines(gpu, name, self.shader(), &["main"])?;
        let uniform =
            super::uniform_buffer(gpu, "gemm.dims", &[d.m as u32, d.n as u32, d.k as u32, 0]);
        let half = self.0.half_inputs();
        let sets = (0..slots)
            .map(|_| {
                // f16 inputs are drawn as f16 so the CPU multiplies exactly what the GPU read.
                let mut matrix = |len: u64, label: &str| -> (Vec<f32>, wgpu::Buffer) {
                    let values: Vec<f32> =
                        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                    if half {
                        let h: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
                        let widened = h.iter().map(|v| v.to_f32()).collect();
                        (
                            widened,
                            super::input_buffer(gpu, label, bytemuck::cast_slice(&h)),
                        )
                    } else {
                        let buf = super::input_buffer(gpu, label, bytemuck::cast_slice(&values));
                        (values, buf)
                    }
                };
                let (a, a_buf) = matrix(d.m * d.k, "gemm.a");
                let (b, b_buf) = matrix(d.k * d.n, "gemm.b");
                let c_buf = super::poisoned_buffer(gpu, "gemm.c", 4 * d.m * d.n);
                let bind = super::bind_group(gpu, &pipelines, &[&uniform, &a_buf, &b_buf, &c_buf]);
                // Which entries of C the CPU checks is drawn now, from the same random stream.
                let (m, n, k) = (d.m as usize, d.n as usize, d.k as usize);
                let entries = reference::entries_to_check(m, n, k, rng);
                Set {
                    bind,
                    outputs: vec![c_buf],
                    check: Box::new(move |out| {
                        let c = f32s(&out[0]);
                        let got: Vec<f32> = entries.iter().map(|&(i, j)| c[i * n + j]).collect();
                        let (want, tolerance) = reference::entries(&a, &b, n, k, &entries);
                        super::compare_f32("C", &got, &want, &tolerance)
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: name,
            pipelines,
            steps: vec![(0, groups)],
            sets,
        }))
    }
}

/// CPU reference: dot products in f64, tolerance from the f32 error bound K·ε·Σ|a·b| (×2 for fma
/// and tile order). f16 inputs arrive here already widened, so only accumulation error remains.
pub mod reference {
    use rand::Rng;

    /// All of C when it is cheap to check, else a random sample that always includes the corners,
    /// where edge tiles and bounds checks live.
    pub fn entries_to_check(
        m: usize,
        n: usize,
        k: usize,
        rng: &mut impl Rng,
    ) -> Vec<(usize, usize)> {
        if (m * n * k) as u64 <= super::FULL_CHECK_MACS {
            return (0..m).flat_map(|i| (0..n).map(move |j| (i, j))).collect();
        }
        let mut picks = vec![(0, 0), (0, n - 1), (m - 1, 0), (m - 1, n - 1)];
        picks.extend(
            (0..super::SAMPLED_ENTRIES).map(|_| (rng.random_range(0..m), rng.random_range(0..n))),
        );
        picks
    }

    pub fn entries(
        a: &[f32],
        b: &[f32],
        n: usize,
        k: usize,
        at: &[(usize, usize)],
    ) -> (Vec<f64>, Vec<f64>) {
        at.iter()
            .map(|&(i, j)| {
                let (mut dot, mut abs) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let prod = f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                    dot += prod;
                    abs += prod.abs();
                }
                (
                    dot,
                    2.0 * k as f64 * f64::from(f32::EPSILON) * abs + f64::from(f32::MIN_POSITIVE),
                )
            })
            .unzip()
    }
}

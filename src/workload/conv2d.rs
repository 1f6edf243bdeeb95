//! `conv2d`: NCHW 3×3 convolution, stride 1, padding 1, f32 (vision backbones, U-Nets).
//! GFLOP/s of 2·N·K·C·H·W·9.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, Launch, Set};
use super::{param, size, Kernel, Param, Params, Prepared, Unit, Work, U32};
use crate::device::Gpu;
use crate::error::{Error, Result};

pub struct Conv2d;

const NAME: &str = "conv2d";
const TILE: u64 = 16;
/// Output channels per workgroup (see shaders/conv2d.wgsl).
const KB: u64 = 8;
/// Above this many outputs the CPU checks a random sample (plus the corners of the first and
/// last image), not all of them.
const FULL_CHECK_OUTPUTS: u64 = 1 << 16;
const SAMPLED_OUTPUTS: usize = 4096;

#[derive(Clone, Copy)]
pub struct Dims {
    pub n: usize,
    pub c: usize,
    pub k: usize,
    pub h: usize,
    pub w: usize,
}

/// The shape, with input, weights and output each within 32-bit indices, so no product of the
/// dimensions below overflows.
fn dims(params: &Params) -> Result<Dims> {
    let [n, c, k, h, w] = ["n", "c", "k", "h", "w"].map(|p| params.get(NAME, p));
    let (n, c, k, h, w) = (n?, c?, k?, h?, w?);
    for (what, len) in [
        ("input n·c·h·w", size(n) * c * h * w),
        ("weights k·c·9", size(k) * c * 9),
        ("output n·k·h·w", size(n) * k * h * w),
    ] {
        if len.get(NAME, params, what)? > U32 {
            return Err(Error::Usage(format!(
                "{}: {what} must fit in 32-bit indices",
                super::instance_key(NAME, params)
            )));
        }
    }
    let [n, c, k, h, w] = [n, c, k, h, w].map(|v| v as usize);
    Ok(Dims { n, c, k, h, w })
}

impl Dims {
    fn input_len(&self) -> u64 {
        (self.n * self.c * self.h * self.w) as u64
    }
    fn weight_len(&self) -> u64 {
        (self.k * self.c * 9) as u64
    }
    fn output_len(&self) -> u64 {
        (self.n * self.k * self.h * self.w) as u64
    }
}

impl Kernel for Conv2d {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "NCHW 3×3 convolution, stride 1, padding 1, f32 (vision backbones); GFLOP/s"
    }
    fn unit(&self) -> Unit {
        Unit::Flops
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/conv2d.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[
            param("n", 1, U32),
            param("c", 1, U32),
            param("k", 1, U32),
            param("h", 1, U32),
            param("w", 1, U32),
        ];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let d = dims(params)?;
        Ok(Work {
            bytes: 4 * (d.input_len() + d.weight_len() + d.output_len()),
            flops: (size(2 * 9) * d.output_len() * d.c as u64).get(NAME, params, "FLOPs")?,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        let d = dims(params)?;
        Ok(4 * d.input_len().max(d.weight_len()).max(d.output_len()))
    }
    fn workgroups(&self, params: &Params) -> Result<[u64; 3]> {
        let d = dims(params)?;
        Ok([
            (d.w as u64).div_ceil(TILE),
            (d.h as u64).div_ceil(TILE),
            d.n as u64 * (d.k as u64).div_ceil(KB),
        ])
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
        let k_blocks = (d.k as u64).div_ceil(KB);
        let groups = super::dispatch_groups(self, params)?;
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["main"])?;
        let words = [d.n, d.c, d.k, d.h, d.w, k_blocks as usize, 0, 0].map(|v| v as u32);
        let uniform = super::uniform_buffer(gpu, "conv2d.dims", &words);
        let sets = (0..slots)
            .map(|_| {
                let x = random_f32(rng, d.input_len(), -1.0, 1.0);
                let wts = random_f32(rng, d.weight_len(), -1.0, 1.0);
                let x_buf = super::input_buffer(gpu, "conv2d.x", bytemuck::cast_slice(&x));
                let w_buf = super::input_buffer(gpu, "conv2d.weights", bytemuck::cast_slice(&wts));
                let y_buf = super::poisoned_buffer(gpu, "conv2d.y", 4 * d.output_len());
                let bind = super::bind_group(gpu, &pipelines, &[&uniform, &x_buf, &w_buf, &y_buf]);
                let at = reference::outputs_to_check(d, rng);
                Set {
                    bind,
                    outputs: vec![y_buf],
                    check: Box::new(move |out| {
                        let y = f32s(&out[0]);
                        let got: Vec<f32> = at.iter().map(|&i| y[i]).collect();
                        let (want, tol) = reference::outputs(&x, &wts, d, &at);
                        super::compare_f32("y", &got, &want, &tol)
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

/// CPU reference: direct convolution in f64 at chosen output indices; tolerance from the f32
/// error bound 2·9C·ε·Σ|x·w|.
pub mod reference {
    use rand::Rng;

    use super::Dims;

    /// Flat NKHW output indices to check: all when cheap, else a sample with the four corners
    /// of the first and last output plane, where the padding lives.
    pub fn outputs_to_check(d: Dims, rng: &mut impl Rng) -> Vec<usize> {
        let total = d.n * d.k * d.h * d.w;
        if total as u64 <= super::FULL_CHECK_OUTPUTS {
            return (0..total).collect();
        }
        let plane = d.h * d.w;
        let mut at = Vec::new();
        for base in [0, total - plane] {
            at.extend([0, d.w - 1, plane - d.w, plane - 1].map(|o| base + o));
        }
        at.extend((0..super::SAMPLED_OUTPUTS).map(|_| rng.random_range(0..total)));
        at
    }

    pub fn outputs(x: &[f32], wts: &[f32], d: Dims, at: &[usize]) -> (Vec<f64>, Vec<f64>) {
        at.iter()
            .map(|&i| {
                let (ox, oy) = (i % d.w, (i / d.w) % d.h);
                let (ko, img) = ((i / (d.w * d.h)) % d.k, i / (d.w * d.h * d.k));
                let (mut acc, mut abs) = (0.0f64, 0.0f64);
                for ci in 0..d.c {
                    for t in 0..9 {
                        let (iy, ix) = ((oy + t / 3) as isize - 1, (ox + t % 3) as isize - 1);
                        if iy < 0 || ix < 0 || iy >= d.h as isize || ix >= d.w as isize {
                            continue;
                        }
                        let xv = x[((img * d.c + ci) * d.h + iy as usize) * d.w + ix as usize];
                        let p = f64::from(xv) * f64::from(wts[(ko * d.c + ci) * 9 + t]);
                        acc += p;
                        abs += p.abs();
                    }
                }
                let eps = f64::from(f32::EPSILON);
                (
                    acc,
                    2.0 * (9 * d.c) as f64 * eps * abs + f64::from(f32::MIN_POSITIVE),
                )
            })
            .unzip()
    }
}

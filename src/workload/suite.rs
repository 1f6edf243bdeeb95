//! Suites: which kernel instances run, with sizes chosen from the device. Parameters are part of
//! the baseline key, so a suite's sizes for a device class must stay stable once baselines exist.

use serde::{Deserialize, Serialize};

use super::{find, Kernel, Params};
use crate::device::Gpu;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// Every kernel at modest sizes: seconds on a GPU; the CI suite on software Vulkan.
    Quick,
    /// The gate's default: every kernel at production sizes (the performance-target shapes).
    Default,
    /// `default` plus causal attention, more lattice dimensions and larger GEMMs and convolutions.
    Full,
    /// The device's ceilings alone: stream bandwidth (the best of read and write patterns) and
    /// FMA throughput.
    Peak,
}

impl Suite {
    pub const ALL: [Suite; 4] = [Suite::Quick, Suite::Default, Suite::Full, Suite::Peak];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Quick => "quick",
            Suite::Default => "default",
            Suite::Full => "full",
            Suite::Peak => "peak",
        }
    }
}

/// Problem sizes by device class: a software adapter runs on two CPU cores in CI, and `Tiny`
/// is for benchmark smoke runs (`CI` set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Tiny,
    Small,
    Large,
}

impl Scale {
    pub fn of(gpu: &Gpu) -> Scale {
        if gpu.is_software() {
            Scale::Small
        } else {
            Scale::Large
        }
    }
}

const MI: u64 = 1 << 20;

/// The sizes one (suite, scale) runs each kernel family at.
struct Sizes {
    /// f32 elements of the streaming kernels (copy, triad, gelu, reductions, xor, peak read).
    stream: u64,
    /// peak_fma workgroups and chain steps.
    fma: (u64, u64),
    /// rows × cols of softmax and layernorm.
    rows: (u64, u64),
    transpose: u64,
    /// Edge of the square GEMMs; hgemm_coop's (tensor cores) is the second.
    gemm: (u64, u64),
    /// conv2d n, c, k, h (= w).
    conv: (u64, u64, u64, u64),
    /// attention batch, heads, seq.
    attention: (u64, u64, u64),
    /// lattice_bfs dim, size.
    bfs: (u64, u64),
    /// lattice_distance batch edge (m = n), dim, coordinate range.
    distance: (u64, u64, u64),
}

fn sizes(suite: Suite, scale: Scale) -> Sizes {
    match (scale, suite) {
        (Scale::Tiny, _) => Sizes {
            stream: 64 * 1024,
            fma: (4, 64),
            rows: (64, 256),
            transpose: 128,
            gemm: (64, 64),
            conv: (1, 4, 8, 16),
            attention: (1, 1, 64),
            bfs: (2, 16),
            distance: (64, 3, 100),
        },
        (Scale::Small, Suite::Quick) => Sizes {
            stream: MI,
            fma: (32, 256),
            rows: (256, 1024),
            transpose: 512,
            gemm: (128, 128),
            conv: (1, 16, 16, 32),
            attention: (1, 2, 128),
            bfs: (3, 24),
            distance: (256, 3, 100),
        },
        (Scale::Small, _) => Sizes {
            stream: 4 * MI,
            fma: (64, 256),
            rows: (1024, 1024),
            transpose: 1024,
            gemm: (256, 256),
            conv: (2, 16, 16, 64),
            attention: (1, 4, 256),
            bfs: (3, 48),
            distance: (512, 3, 100),
        },
        (Scale::Large, Suite::Quick) => Sizes {
            stream: 64 * MI,
            fma: (4096, 1024),
            rows: (4096, 8192),
            transpose: 4096,
            gemm: (2048, 4096),
            conv: (8, 64, 64, 56),
            attention: (1, 16, 1024),
            bfs: (3, 128),
            distance: (4096, 4, 1024),
        },
        // The shapes of the performance targets (docs/performance.md): 1 GiB streams,
        // 16384×8192 softmax/layernorm, 4096³ sgemm, 8192³ hgemm on tensor cores.
        (Scale::Large, _) => Sizes {
            stream: 256 * MI,
            fma: (4096, 4096),
            rows: (16384, 8192),
            transpose: 8192,
            gemm: (4096, 8192),
            conv: (32, 64, 64, 56),
            // peer_bench.py times SDPA at 8×16×4096×64.
            attention: (8, 16, 4096),
            bfs: (3, 256),
            distance: (8192, 4, 1024),
        },
    }
}

/// The kernel instances of `suite` at `scale`, in run order: the ceilings first, so every later
/// result can be read against them.
pub fn instances(suite: Suite, scale: Scale) -> Vec<(&'static dyn Kernel, Params)> {
    let s = sizes(suite, scale);
    let k = |name: &str| find(name).expect("suite names are registered kernels");
    let n = |name| (k(name), Params::new([("n", s.stream)]));
    let square = |name, edge| {
        (
            k(name),
            Params::new([("m", edge), ("n", edge), ("k", edge)]),
        )
    };
    let attention = |(batch, heads, seq), causal| {
        let p = [
            ("batch", batch),
            ("heads", heads),
            ("seq", seq),
            ("causal", causal),
        ];
        (k("attention"), Params::new(p))
    };
    let conv = |(n, c, kk, hw): (u64, u64, u64, u64)| {
        let p = [("n", n), ("c", c), ("k", kk), ("h", hw), ("w", hw)];
        (k("conv2d"), Params::new(p))
    };
    let bfs = |(dim, size)| {
        (
            k("lattice_bfs"),
            Params::new([("dim", dim), ("size", size)]),
        )
    };
    let rows = |name| {
        let (rows, cols) = s.rows;
        (k(name), Params::new([("rows", rows), ("cols", cols)]))
    };
    let peaks = vec![
        n("peak_bandwidth"),
        (
            k("peak_fma"),
            Params::new([("groups", s.fma.0), ("iters", s.fma.1)]),
        ),
    ];
    if suite == Suite::Peak {
        return peaks;
    }
    let (edge, dim, range) = s.distance;
    let mut list = peaks;
    list.extend([
        n("copy"),
        n("triad"),
        n("gelu"),
        n("reduce_sum"),
        n("reduce_min"),
        n("reduce_max"),
        rows("softmax"),
        rows("layernorm"),
        (
            k("transpose"),
            Params::new([("rows", s.transpose), ("cols", s.transpose)]),
        ),
        square("sgemm", s.gemm.0),
        square("sgemm_subgroup", s.gemm.0),
        square("hgemm", s.gemm.0),
        square("hgemm_coop", s.gemm.1),
        conv(s.conv),
        attention(s.attention, 0),
        n("xor_transform"),
        bfs(s.bfs),
        (
            k("lattice_distance"),
            Params::new([("m", edge), ("n", edge), ("dim", dim), ("size", range)]),
        ),
    ]);
    if suite == Suite::Full {
        let (c, hw) = (4 * s.conv.1, s.conv.3 / 2);
        list.extend([
            attention(s.attention, 1),
            conv((s.conv.0, c, c, hw)),
            square("sgemm", 2 * s.gemm.0),
            // The same order of vertices on flatter and deeper lattices.
            bfs((2, s.bfs.1.pow(3).isqrt())),
            bfs((6, (s.bfs.1 as f64).sqrt().round() as u64)),
        ]);
    }
    list
}

/// `instances`, narrowed to `--kernel` names (each of which must exist in the suite).
pub fn select(
    suite: Suite,
    scale: Scale,
    kernels: &[String],
) -> Result<Vec<(&'static dyn Kernel, Params)>> {
    let all = instances(suite, scale);
    for name in kernels {
        find(name)?;
        if !all.iter().any(|(k, _)| k.name() == name) {
            return Err(Error::Usage(format!(
                "kernel {name:?} is not in suite {}",
                suite.name()
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|(k, _)| kernels.is_empty() || kernels.iter().any(|n| n == k.name()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_in_quick_and_every_instance_is_valid() {
        for scale in [Scale::Tiny, Scale::Small, Scale::Large] {
            for suite in Suite::ALL {
                for (kernel, params) in instances(suite, scale) {
                    // The loader's check: declared names, ranges and sizes that fit.
                    super::super::check_params(kernel, &params).unwrap_or_else(|e| {
                        panic!("{suite:?}/{scale:?} {}[{params}]: {e:?}", kernel.name())
                    });
                }
            }
            let quick: Vec<_> = instances(Suite::Quick, scale)
                .iter()
                .map(|(k, _)| k.name())
                .collect();
            for k in super::super::all() {
                assert!(quick.contains(&k.name()), "{} missing from quick", k.name());
            }
        }
    }
}

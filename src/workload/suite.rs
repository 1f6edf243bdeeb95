//! Suites: which kernel instances run, with sizes chosen from the device. Parameters are part of
//! the baseline key, so a suite's sizes for a device class must stay stable once baselines exist.

use serde::{Deserialize, Serialize};

use super::{find, Kernel, Params};
use crate::device::Gpu;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// Seconds on a GPU; the CI suite on software Vulkan.
    Quick,
    /// The gate's default: production-sized problems on a GPU.
    Default,
}

/// Problem sizes by device class: a software adapter runs on two CPU cores in CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
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

/// The kernel instances of `suite` at `scale`, in run order.
pub fn instances(suite: Suite, scale: Scale) -> Vec<(&'static dyn Kernel, Params)> {
    // (f32 elements streamed by copy/reduce_sum/xor_transform, sgemm edge)
    let (n, edge) = match (suite, scale) {
        (Suite::Quick, Scale::Small) => (MI, 128),
        (Suite::Default, Scale::Small) => (4 * MI, 256),
        (Suite::Quick, Scale::Large) => (64 * MI, 2048),
        // 1 GiB copies, 4096³ sgemm.
        (Suite::Default, Scale::Large) => (256 * MI, 4096),
    };
    let k = |name: &str| find(name).expect("suite names are registered kernels");
    vec![
        (k("copy"), Params::new([("n", n)])),
        (k("reduce_sum"), Params::new([("n", n)])),
        (
            k("sgemm"),
            Params::new([("m", edge), ("n", edge), ("k", edge)]),
        ),
        (k("xor_transform"), Params::new([("n", n)])),
    ]
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
                "kernel {name:?} is not in suite {suite:?}"
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|(k, _)| kernels.is_empty() || kernels.iter().any(|n| n == k.name()))
        .collect())
}

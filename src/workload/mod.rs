//! Workloads: one WGSL kernel each, with its parameters, work counts and CPU reference.
//!
//! A kernel's name is the same everywhere: `shaders/<name>.wgsl`, `workload/<name>.rs`, the metric
//! label and the baseline key. A [`Kernel`] builds a [`Prepared`] instance once (pipelines, buffers,
//! random inputs); the sampler then encodes it many times and asks it to verify its outputs.

mod attention;
mod conv2d;
mod copy;
mod gelu;
mod gemm;
mod lattice_bfs;
mod lattice_distance;
mod launch;
mod layernorm;
mod peak;
mod reduce;
mod softmax;
pub mod suite;
mod transpose;
mod triad;
mod xor_transform;

use std::collections::BTreeMap;
use std::fmt;

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use wgpu::util::DeviceExt;

use crate::device::{Gpu, ShaderChecks};
use crate::error::{Error, Result};

/// Every kernel this build knows, in suite order.
pub fn all() -> &'static [&'static dyn Kernel] {
    &[
        &peak::PeakBandwidth,
        &peak::PeakFma,
        &copy::Copy,
        &triad::Triad,
        &gelu::Gelu,
        &reduce::REDUCE_SUM,
        &reduce::REDUCE_MIN,
        &reduce::REDUCE_MAX,
        &softmax::Softmax,
        &layernorm::Layernorm,
        &transpose::Transpose,
        &gemm::SGEMM,
        &gemm::SGEMM_SUBGROUP,
        &gemm::HGEMM,
        &gemm::HGEMM_COOP,
        &conv2d::Conv2d,
        &attention::Attention,
        &xor_transform::XorTransform,
        &lattice_bfs::LatticeBfs,
        &lattice_distance::LatticeDistance,
    ]
}

/// How every pipeline is created in each mode, as it enters [`kernel_hash`]: changing these
/// changes what is measured as surely as changing the WGSL does.
pub fn pipeline_options(checks: ShaderChecks) -> &'static str {
    match checks {
        ShaderChecks::Checked => {
            "wgpu create_shader_module (runtime bounds checks on); compute pipelines with default \
             compilation options (no override constants, workgroup memory zero-initialised)"
        }
        ShaderChecks::Trusted => {
            "wgpu create_shader_module_trusted (ShaderRuntimeChecks::unchecked); compute \
             pipelines without override constants, workgroup memory not zero-initialised; \
             no indirect-call validation"
        }
    }
}

/// `sha256:<hex>` of a kernel's name, WGSL source and [`pipeline_options`] in `checks` mode:
/// stored per kernel in a baseline so that a check never compares a rewritten kernel, or one
/// compiled another way, with the old one's times.
pub fn kernel_hash(kernel: &dyn Kernel, checks: ShaderChecks) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [kernel.name(), kernel.shader(), pipeline_options(checks)] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub fn find(name: &str) -> Result<&'static dyn Kernel> {
    all()
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| {
            let known: Vec<_> = all().iter().map(|k| k.name()).collect();
            Error::Usage(format!(
                "unknown kernel {name:?}; known: {}",
                known.join(", ")
            ))
        })
}

/// One parameter a kernel takes and the values it accepts. Each kernel declares its list once
/// ([`Kernel::params`]); [`Params::get`], the baseline loader and `list` all read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Param {
    pub name: &'static str,
    pub min: u64,
    pub max: u64,
}

/// A parameter accepting `min..=max`.
pub const fn param(name: &'static str, min: u64, max: u64) -> Param {
    Param { name, min, max }
}

/// Most a parameter may be unless its kernel says less: values go to WGSL as `u32`.
pub const U32: u64 = u32::MAX as u64;

/// Largest storage buffer any instance may ask for before a device is known (16 GiB): WGSL
/// indexes arrays with 32-bit integers, so a buffer of 4-byte elements past 2^32 of them could
/// never be addressed. The device's own limit ([`crate::device::Gpu::max_binding_bytes`]) is
/// checked once it is open ([`fits_device`]), before any allocation.
pub const MAX_BINDING_BYTES: u64 = 1 << 34;

/// Why `params` is not an instance of `kernel` this build can run, as (field under `params`,
/// reason): an unknown, missing or out-of-range parameter (field = its name), or a size that
/// overflows or exceeds [`MAX_BINDING_BYTES`] (field empty: the combination is at fault).
/// Computes nothing unchecked and allocates nothing.
pub fn check_params(
    kernel: &dyn Kernel,
    params: &Params,
) -> std::result::Result<(), (String, String)> {
    let specs = kernel.params();
    let takes = || {
        let names: Vec<_> = specs.iter().map(|p| p.name).collect();
        format!("{} takes {}", kernel.name(), names.join(", "))
    };
    if let Some(name) = params
        .0
        .keys()
        .find(|k| !specs.iter().any(|p| p.name == *k))
    {
        return Err((name.clone(), format!("unknown parameter; {}", takes())));
    }
    for spec in specs {
        match params.0.get(spec.name) {
            None => return Err((spec.name.into(), format!("missing; {}", takes()))),
            Some(&v) if !(spec.min..=spec.max).contains(&v) => {
                return Err((
                    spec.name.into(),
                    format!(
                        "is {v}; {} takes {} in {}..={}",
                        kernel.name(),
                        spec.name,
                        spec.min,
                        spec.max
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let whole = |e: Error| (String::new(), e.to_string());
    kernel.work(params).map_err(whole)?;
    kernel.footprint(params).map_err(whole)?;
    let largest = kernel.largest_binding(params).map_err(whole)?;
    if largest > MAX_BINDING_BYTES {
        return Err((
            String::new(),
            format!(
                "{}: a {largest}-byte buffer, over the {MAX_BINDING_BYTES} bytes any device \
                 can bind",
                instance_key(kernel.name(), params)
            ),
        ));
    }
    Ok(())
}

/// Check that `kernel` at `params` fits this device's storage binding limit, before anything is
/// allocated for it.
pub fn fits_device(gpu: &Gpu, kernel: &dyn Kernel, params: &Params) -> Result<()> {
    let bytes = kernel.largest_binding(params)?;
    let max = gpu.max_binding_bytes();
    if bytes > max {
        return Err(Error::Usage(format!(
            "{}: a {bytes}-byte buffer exceeds this adapter's storage binding limit of {max} bytes",
            instance_key(kernel.name(), params)
        )));
    }
    let groups = kernel.workgroups(params)?;
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    if groups.iter().any(|&g| g > u64::from(max)) {
        return Err(Error::Usage(format!(
            "{}: needs {groups:?} workgroups, over this adapter's {max} per dimension",
            instance_key(kernel.name(), params)
        )));
    }
    Ok(())
}

/// The workgroups of an instance that [`fits_device`] accepted, as a dispatch takes them.
pub(crate) fn dispatch_groups(kernel: &dyn Kernel, params: &Params) -> Result<[u32; 3]> {
    // fits_device held each to the adapter's limit, which is a u32.
    Ok(kernel.workgroups(params)?.map(|g| g as u32))
}

/// Checked arithmetic on sizes derived from parameters (which come from files): an overflow is
/// an error naming the instance and the quantity, never a wrapped value or a panic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Size(Option<u64>);

pub(crate) fn size(v: u64) -> Size {
    Size(Some(v))
}

impl std::ops::Mul<u64> for Size {
    type Output = Size;
    fn mul(self, rhs: u64) -> Size {
        Size(self.0.and_then(|v| v.checked_mul(rhs)))
    }
}

impl std::ops::Mul<Size> for Size {
    type Output = Size;
    fn mul(self, rhs: Size) -> Size {
        Size(self.0.zip(rhs.0).and_then(|(a, b)| a.checked_mul(b)))
    }
}

impl std::ops::Add<Size> for Size {
    type Output = Size;
    fn add(self, rhs: Size) -> Size {
        Size(self.0.zip(rhs.0).and_then(|(a, b)| a.checked_add(b)))
    }
}

impl Size {
    /// The value, or an error saying that `what` of `kernel` at `params` overflows.
    pub fn get(self, kernel: &str, params: &Params, what: &str) -> Result<u64> {
        self.0.ok_or_else(|| {
            Error::Usage(format!(
                "{}: {what} overflows 64 bits",
                instance_key(kernel, params)
            ))
        })
    }
}

/// A kernel's problem size, e.g. `{n: 1048576}` or `{m, n, k}`. Part of the baseline key.
/// Deserialising refuses a parameter given twice (JSON objects would silently keep the last).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Params(pub BTreeMap<String, u64>);

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of parameter names to non-negative integers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Params, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, u64>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate parameter `{k}`"
                        )));
                    }
                    out.insert(k, v);
                }
                Ok(Params(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl Params {
    pub fn new<const N: usize>(pairs: [(&str, u64); N]) -> Self {
        Params(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// A required parameter within the range its kernel declares ([`Kernel::params`]), with an
    /// error that names the kernel and the parameter.
    pub fn get(&self, kernel: &str, name: &str) -> Result<u64> {
        let (min, max) = find(kernel)?
            .params()
            .iter()
            .find(|p| p.name == name)
            .map_or((1, U32), |p| (p.min, p.max));
        match self.0.get(name) {
            Some(&v) if (min..=max).contains(&v) => Ok(v),
            Some(v) => Err(Error::Usage(format!(
                "{kernel}: parameter {name}={v} must be in {min}..={max}"
            ))),
            None => Err(Error::Usage(format!("{kernel}: missing parameter {name}"))),
        }
    }

    /// A 0/1 switch such as `causal`, with an error that names the kernel and the parameter.
    pub fn flag(&self, kernel: &str, name: &str) -> Result<bool> {
        match self.0.get(name) {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(Error::Usage(format!(
                "{kernel}: parameter {name} must be 0 or 1, not {v}"
            ))),
            None => Err(Error::Usage(format!("{kernel}: missing parameter {name}"))),
        }
    }

    /// The element count `n` of a kernel that streams vec4s: positive and a multiple of 4.
    pub fn vec4_len(&self, kernel: &str) -> Result<u64> {
        let n = self.get(kernel, "n")?;
        if n % 4 != 0 {
            return Err(Error::Usage(format!(
                "{kernel}: n={n} must be a multiple of 4"
            )));
        }
        Ok(n)
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<_> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// The key of a kernel instance: name plus parameters, e.g. `sgemm[k=256,m=256,n=256]`.
pub fn instance_key(kernel: &str, params: &Params) -> String {
    format!("{kernel}[{params}]")
}

/// Bytes moved, floating-point operations done and graph edges traversed by one iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    pub bytes: u64,
    pub flops: u64,
    /// Undirected edges of the traversed graph (graph kernels only; GTEPS counts these).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub edges: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Work {
    /// FLOPs per byte: where the kernel sits on the roofline.
    pub fn intensity(&self) -> f64 {
        self.flops as f64 / self.bytes.max(1) as f64
    }
}

/// What a kernel's rate is reported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Bytes per second (GB/s in tables).
    Bandwidth,
    /// FLOP per second (GFLOP/s in tables).
    Flops,
    /// Traversed edges per second (GTEPS in tables), as Graph500 counts them.
    Teps,
}

impl Unit {
    /// The rate in the table unit (GB/s or GFLOP/s) for one iteration taking `seconds`.
    pub fn rate(self, work: Work, seconds: f64) -> f64 {
        let amount = match self {
            Unit::Bandwidth => work.bytes,
            Unit::Flops => work.flops,
            Unit::Teps => work.edges,
        };
        amount as f64 / seconds / 1e9
    }

    pub fn label(self) -> &'static str {
        match self {
            Unit::Bandwidth => "GB/s",
            Unit::Flops => "GFLOP/s",
            Unit::Teps => "GTEPS",
        }
    }
}

/// The outcome of comparing a kernel's outputs with its CPU reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    /// How many output values were compared.
    pub checked: u64,
    /// Largest error seen, in the unit of the tolerance; NaN (null in JSON) when an output was.
    #[serde(with = "crate::compare::nan_as_null")]
    pub max_error: f64,
    pub tolerance: f64,
    /// What failed, or what was compared.
    pub detail: String,
}

impl Verification {
    pub fn exact(checked: u64, mismatches: u64, what: &str, first_bad: Option<usize>) -> Self {
        Verification {
            ok: mismatches == 0,
            checked,
            max_error: mismatches as f64,
            tolerance: 0.0,
            detail: match first_bad {
                None => format!("{what}: {checked} values bit-exact"),
                Some(i) => {
                    format!("{what}: {mismatches} of {checked} values differ, first at index {i}")
                }
            },
        }
    }

    /// Combine checks of several outputs: all must pass.
    pub fn all(parts: Vec<Verification>) -> Self {
        Verification {
            ok: parts.iter().all(|p| p.ok),
            checked: parts.iter().map(|p| p.checked).sum(),
            max_error: parts.iter().map(|p| p.max_error).fold(0.0, f64::max),
            tolerance: parts.iter().map(|p| p.tolerance).fold(0.0, f64::max),
            detail: parts
                .iter()
                .map(|p| p.detail.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// A kernel family: knows its shader, its suites' sizes and how to build an instance.
pub trait Kernel: Sync {
    fn name(&self) -> &'static str;
    /// What platform workload it mirrors.
    fn describe(&self) -> &'static str;
    fn unit(&self) -> Unit;
    /// Whether its rate is of the same arithmetic as its unit's ceiling kernel (f32 FMA for
    /// GFLOP/s): false for a kernel on other units, e.g. f16 on tensor cores, which may rightly
    /// run faster than the f32 ceiling. Bytes are bytes, so every bandwidth kernel is comparable.
    fn comparable_to_ceiling(&self) -> bool {
        true
    }
    fn shader(&self) -> &'static str;
    /// The parameters an instance takes and their ranges: the one place they are declared.
    fn params(&self) -> &'static [Param];
    /// Why this adapter cannot run the kernel (e.g. `needs SHADER_F16`), or None when it can.
    fn unsupported(&self, _gpu: &Gpu) -> Option<String> {
        None
    }
    /// Work of one iteration at `params`.
    fn work(&self, params: &Params) -> Result<Work>;
    /// Bytes of device memory one copy of the instance's buffers occupies.
    fn footprint(&self, params: &Params) -> Result<u64>;
    /// Bytes of the instance's largest storage buffer, held to the device's binding limit.
    fn largest_binding(&self, params: &Params) -> Result<u64>;
    /// Workgroups of its dispatch, held to the device's per-dimension limit before anything is
    /// allocated. Grid-stride kernels cap theirs to the limit (`grid_groups`): `[1, 1, 1]`.
    fn workgroups(&self, _params: &Params) -> Result<[u64; 3]> {
        Ok([1, 1, 1])
    }
    /// Build pipelines and `slots` independent sets of buffers (for cache-cold rotation), with
    /// fresh random inputs from `rng` and poisoned outputs.
    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>>;
}

/// A kernel instance ready to run: pipelines and buffers built once.
pub trait Prepared {
    /// Record one iteration using buffer set `slot` into an open compute pass.
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize);
    /// Read back every slot's outputs and compare with the CPU reference.
    fn verify(&self, gpu: &Gpu) -> Result<Verification>;
}

// ---- helpers shared by the kernels ----------------------------------------------------------

/// `needs …` naming the features of `wanted` this adapter lacks, or None when it has them all.
pub(crate) fn missing_features(gpu: &Gpu, wanted: wgpu::Features) -> Option<String> {
    let missing = wanted - gpu.features;
    (!missing.is_empty()).then(|| format!("needs {missing:?}"))
}

/// A shader's pipelines, one per entry point, sharing one bind group layout (group 0).
pub(crate) struct Pipelines {
    pub layout: wgpu::BindGroupLayout,
    pub entries: Vec<wgpu::ComputePipeline>,
}

/// The group-0 bindings a WGSL module declares, read with naga so kernels never restate them.
pub fn bind_group_entries(
    source: &str,
) -> std::result::Result<Vec<wgpu::BindGroupLayoutEntry>, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let mut entries: Vec<_> = module
        .global_variables
        .iter()
        .filter_map(|(_, var)| {
            let binding = var.binding.as_ref().filter(|b| b.group == 0)?;
            let ty = match var.space {
                naga::AddressSpace::Uniform => wgpu::BufferBindingType::Uniform,
                naga::AddressSpace::Storage { access } => wgpu::BufferBindingType::Storage {
                    read_only: !access.contains(naga::StorageAccess::STORE),
                },
                _ => return None,
            };
            Some(wgpu::BindGroupLayoutEntry {
                binding: binding.binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
        })
        .collect();
    entries.sort_by_key(|e| e.binding);
    Ok(entries)
}

pub(crate) fn pipelines(
    gpu: &Gpu,
    name: &str,
    source: &str,
    entry_points: &[&str],
) -> Result<Pipelines> {
    let entries = bind_group_entries(source).map_err(|reason| Error::Gpu {
        kernel: name.to_string(),
        reason: format!("shaders/{name}.wgsl: {reason}"),
    })?;
    let layout = gpu
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
    let pipeline_layout = gpu
        .device
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
    let module = gpu.shader_module(name, source);
    let entries = entry_points
        .iter()
        .map(|entry| {
            gpu.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: gpu.compilation_options(),
                    cache: None,
                })
        })
        .collect();
    Ok(Pipelines { layout, entries })
}

/// One pipeline per entry point, each with the layout naga derives from what that entry point
/// uses (group 0), for kernels whose entry points must not all bind the same buffers.
pub(crate) fn auto_pipelines<const N: usize>(
    gpu: &Gpu,
    name: &str,
    source: &str,
    entry_points: [&str; N],
) -> [wgpu::ComputePipeline; N] {
    let module = gpu.shader_module(name, source);
    entry_points.map(|entry| {
        gpu.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: gpu.compilation_options(),
                cache: None,
            })
    })
}

/// A storage buffer holding `contents`.
pub(crate) fn input_buffer(gpu: &Gpu, label: &str, contents: &[u8]) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        })
}

/// An output buffer filled with all-ones bits (NaN as f32, u32::MAX as u32), so a kernel that
/// writes nothing cannot pass verification.
pub(crate) fn poisoned_buffer(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    input_buffer(gpu, label, &vec![0xFF; bytes as usize])
}

/// A uniform buffer of 32-bit words (a multiple of 4 words, as WGSL structs here are padded).
pub(crate) fn uniform_buffer(gpu: &Gpu, label: &str, words: &[u32]) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(words),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// Bind `buffers` to bindings 0, 1, 2, … of the shader's layout.
pub(crate) fn bind_group(
    gpu: &Gpu,
    pipelines: &Pipelines,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<_> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipelines.layout,
        entries: &entries,
    })
}

/// Copy a buffer back to the host as `T`s (copied out, so no alignment is assumed of the bytes).
pub(crate) fn read_back<T: bytemuck::Pod>(
    gpu: &Gpu,
    kernel: &str,
    buffer: &wgpu::Buffer,
) -> Result<Vec<T>> {
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: buffer.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, buffer.size());
    gpu.queue.submit([encoder.finish()]);
    Ok(bytemuck::pod_collect_to_vec(
        &gpu.read_mapped(kernel, &staging)?,
    ))
}

/// Workgroups for a grid-stride kernel over `items` with `per_group` invocations each: enough to
/// fill the device, never more than the dispatch limit.
pub(crate) fn grid_groups(gpu: &Gpu, items: u64, per_group: u64, cap: u32) -> u32 {
    let needed = items.div_ceil(per_group).max(1);
    needed
        .min(u64::from(cap))
        .min(u64::from(gpu.limits.max_compute_workgroups_per_dimension)) as u32
}

/// vec4s one workgroup covers per step of the streaming kernels (copy, reductions, xor_transform,
/// peak_bandwidth's blocked variants): 256 invocations × 4 vec4s, 16 KiB of f32s.
pub(crate) const BLOCK: u64 = 1024;

/// The block-grid cap of copy and xor_transform on a GPU: one block per workgroup up to the
/// dispatch limit. wgpu does not tell how many SMs (or how many resident workgroups) a device has,
/// so a grid sized to "k workgroups per SM" cannot be computed here; and a persistent grid just
/// above the resident capacity runs a second, nearly empty wave that costs almost a whole one.
/// Many short workgroups (PyTorch's elementwise launch shape) keep every SM fed on any device, the
/// last partial wave costing at most one block's time, and each invocation still keeps four 16-byte
/// loads in flight. Past 65535 blocks (n > 2^28 f32s) the grid-stride loop takes over.
pub(crate) const ONE_BLOCK_EACH: u32 = 65535;

/// Workgroups a CPU adapter (lavapipe) gets at most: the quick suite's 1 Mi f32s are exactly 256
/// blocks, one per workgroup. Fewer, longer workgroups amortise the reductions' barrier tree (a
/// coroutine switch per invocation and barrier on lavapipe) further, but on a busy host llvmpipe
/// then balances worse (64 cost copy ~11 % wall time at equal CPU time); 256 is 4× fewer trees
/// than the old one-vec4-per-invocation grid. It also makes the test size 4·(1024·256 + 77) wrap
/// the grid-stride loop there.
pub(crate) const SOFTWARE_GROUPS: u32 = 256;

/// Workgroups for `vec4s` vec4s in blocks of [`BLOCK`], at most `cap`: the blocks are spread so
/// that every workgroup walks the same number of them, give or take one (so a grid just over the
/// cap does not leave one workgroup a second round alone).
pub(crate) fn groups_for(vec4s: u64, cap: u32) -> u32 {
    let blocks = vec4s.div_ceil(BLOCK).max(1);
    let rounds = blocks.div_ceil(u64::from(cap.max(1)));
    // blocks / rounds ≤ cap, so it fits in u32.
    blocks.div_ceil(rounds) as u32
}

/// [`groups_for`] on `gpu`: `gpu_cap` on a GPU, [`SOFTWARE_GROUPS`] on a CPU adapter, never more
/// than the device's dispatch limit.
pub(crate) fn stream_groups(gpu: &Gpu, vec4s: u64, gpu_cap: u32) -> u32 {
    let cap = if gpu.is_software() {
        SOFTWARE_GROUPS.min(gpu_cap)
    } else {
        gpu_cap
    };
    groups_for(
        vec4s,
        cap.min(gpu.limits.max_compute_workgroups_per_dimension),
    )
}

/// `rows` and `cols` of a row-wise kernel; both must be positive and `rows·cols` fit in u32 indices.
pub(crate) fn rows_cols(kernel: &str, params: &Params) -> Result<(u64, u64)> {
    let (rows, cols) = (params.get(kernel, "rows")?, params.get(kernel, "cols")?);
    if (size(rows) * cols).get(kernel, params, "rows·cols")? > U32 {
        return Err(Error::Usage(format!(
            "{}: rows·cols must fit in 32-bit indices",
            instance_key(kernel, params)
        )));
    }
    Ok((rows, cols))
}

/// Row `r` of a row-major matrix with `cols` columns.
pub(crate) fn row<T>(data: &[T], r: u64, cols: u64) -> &[T] {
    &data[(r * cols) as usize..((r + 1) * cols) as usize]
}

/// Compare words bit for bit (copies, integer kernels, restored catalytic memory).
pub(crate) fn compare_exact(what: &str, got: &[u32], want: &[u32]) -> Verification {
    let mismatches = got.iter().zip(want).filter(|(g, w)| g != w).count() as u64
        + got.len().abs_diff(want.len()) as u64;
    let first = got.iter().zip(want).position(|(g, w)| g != w);
    Verification::exact(want.len() as u64, mismatches, what, first)
}

/// Compare floats with an absolute tolerance per element; NaN never passes.
pub(crate) fn compare_f32(
    what: &str,
    got: &[f32],
    want: &[f64],
    tolerance: &[f64],
) -> Verification {
    let mut worst = 0.0f64;
    let mut worst_ratio = 0.0f64;
    let mut bad = 0u64;
    let mut first_bad = None;
    for (i, ((&g, &w), &tol)) in got.iter().zip(want).zip(tolerance).enumerate() {
        let err = (f64::from(g) - w).abs();
        let ok = err <= tol; // false for NaN
        if !ok {
            bad += 1;
            first_bad.get_or_insert((i, g, w));
        }
        let ratio = if tol > 0.0 { err / tol } else { err };
        if ratio > worst_ratio || ratio.is_nan() {
            worst_ratio = ratio;
            worst = err;
        }
    }
    let checked = got.len() as u64;
    Verification {
        ok: bad == 0 && got.len() == want.len(),
        checked,
        max_error: worst,
        tolerance: tolerance.iter().copied().fold(0.0, f64::max),
        detail: match first_bad {
            None => format!("{what}: {checked} values within tolerance (worst at {worst_ratio:.3} of it)"),
            Some((i, g, w)) => format!(
                "{what}: {bad} of {checked} values out of tolerance, first at index {i}: got {g}, want {w}"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn params_of(kernel: &str, pairs: &[(&str, u64)]) -> (&'static dyn Kernel, Params) {
        let params = Params(pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect());
        (find(kernel).unwrap(), params)
    }

    #[test]
    fn overflowing_sizes_are_errors_naming_the_instance() {
        for (kernel, pairs) in [
            (
                "sgemm",
                &[
                    ("m", 1_000_000_000),
                    ("n", 1_000_000_000),
                    ("k", 1_000_000_000),
                ][..],
            ),
            (
                "conv2d",
                &[("n", U32), ("c", U32), ("k", U32), ("h", U32), ("w", U32)],
            ),
            (
                "attention",
                &[("batch", U32), ("heads", U32), ("seq", U32), ("causal", 1)],
            ),
            (
                "lattice_distance",
                &[("m", U32), ("n", U32), ("dim", 8), ("size", 2)],
            ),
            ("softmax", &[("rows", U32), ("cols", U32)]),
        ] {
            let (k, params) = params_of(kernel, pairs);
            let (field, reason) = check_params(k, &params).unwrap_err();
            assert_eq!(field, "", "{kernel}: {reason}");
            assert!(reason.contains(&instance_key(kernel, &params)), "{reason}");
        }
    }

    #[test]
    fn names_and_ranges_are_checked_per_parameter() {
        type Pairs = &'static [(&'static str, u64)];
        let cases: [(&str, Pairs, &str, &str); 6] = [
            (
                "copy",
                &[("n", 1024), ("zzz", 7)],
                "zzz",
                "unknown parameter; copy takes n",
            ),
            ("copy", &[], "n", "missing"),
            ("copy", &[("n", 0)], "n", "is 0; copy takes n in 4..="),
            ("copy", &[("n", 1 << 62)], "n", "is 4611686018427387904"),
            (
                "attention",
                &[("batch", 1), ("heads", 1), ("seq", 64), ("causal", 2)],
                "causal",
                "0..=1",
            ),
            ("lattice_bfs", &[("dim", 17), ("size", 2)], "dim", "1..=16"),
        ];
        for (kernel, pairs, field, says) in cases {
            let (k, params) = params_of(kernel, pairs);
            let (got, reason) = check_params(k, &params).unwrap_err();
            assert_eq!(got, field, "{reason}");
            assert!(reason.contains(says), "{reason} should say {says:?}");
        }
    }

    #[test]
    fn a_buffer_past_the_static_cap_is_refused_before_a_device_is_known() {
        // 2^33 f32 = 32 GiB: every parameter in range, but no device binds it.
        let (k, params) = params_of("copy", &[("n", 1 << 32)]);
        assert!(check_params(k, &params).is_err());
        let (k, params) = params_of("transpose", &[("rows", 1 << 16), ("cols", 1 << 16)]);
        let (_, reason) = check_params(k, &params).unwrap_err();
        assert!(reason.contains("32-bit"), "{reason}");
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        let err = serde_json::from_str::<Params>(r#"{"n": 4, "n": 8}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate parameter `n`"), "{err}");
        assert!(serde_json::from_str::<Params>(r#"{"n": 4, "m": 8}"#).is_ok());
    }

    /// Sizes that stress the arithmetic: the edges of every range and of u64.
    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..=70u64,
            Just(U32),
            Just(U32 + 1),
            Just(u64::MAX),
            Just(1 << 62),
            any::<u64>(),
            1u64..=1 << 20,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Whatever a file says, checking and sizing an instance returns, never panics, and an
        /// instance that passes has sizes that fit.
        #[test]
        fn any_parameters_give_a_result_never_a_panic(
            which in 0..all().len(),
            values in proptest::collection::vec(value(), 6),
            extra in proptest::option::of("[a-z]{1,4}"),
        ) {
            let kernel = all()[which];
            let mut params = Params(
                kernel.params().iter().zip(&values).map(|(p, &v)| (p.name.to_string(), v)).collect(),
            );
            if let Some(name) = extra {
                params.0.insert(name, values[5]);
            }
            let checked = check_params(kernel, &params);
            let (work, footprint, largest) =
                (kernel.work(&params), kernel.footprint(&params), kernel.largest_binding(&params));
            if checked.is_ok() {
                prop_assert!(work.is_ok() && footprint.is_ok());
                prop_assert!(largest.unwrap() <= MAX_BINDING_BYTES);
            }
        }
    }

    #[test]
    fn groups_cover_every_block_evenly() {
        for cap in [1, 7, 64, 1024, 65535] {
            for vec4s in [
                1,
                1024,
                1025,
                64 * 1024,
                257 * 1024 + 77,
                65536 * 1024,
                1 << 30,
            ] {
                let groups = u64::from(groups_for(vec4s, cap));
                let blocks = vec4s.div_ceil(BLOCK);
                assert!((1..=u64::from(cap)).contains(&groups), "{vec4s} {cap}");
                // As few rounds as the cap allows, spread over as few workgroups as that needs.
                let rounds = blocks.div_ceil(groups);
                assert_eq!(rounds, blocks.div_ceil(u64::from(cap)), "{vec4s} {cap}");
                assert!(
                    groups == 1 || (groups - 1) * rounds < blocks,
                    "{vec4s} {cap}"
                );
            }
        }
        // The default suite's 1 GiB stream: 65536 blocks, two each, not one workgroup alone.
        assert_eq!(groups_for(1 << 26, ONE_BLOCK_EACH), 32768);
        assert_eq!(groups_for(4, ONE_BLOCK_EACH), 1);
    }
}

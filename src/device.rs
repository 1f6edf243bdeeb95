//! Adapter choice, device acquisition and the fingerprint a baseline is keyed by.
//!
//! Acquiring the device is kept apart from running kernels: a [`Gpu`] is opened once and every
//! workload runs on it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long a GPU wait may take where no kernel deadline is set (see [`Gpu::within`]): opening
/// buffers, a correctness-only pass. Generous, but never forever.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// What identifies a device for baseline purposes. A baseline is only comparable with the same
/// name + backend (the key); a different driver is reported, not silently accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub name: String,
    pub vendor_id: u32,
    pub device_id: u32,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub backend: String,
    /// The host CPU, for software adapters whose timings are CPU timings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
}

/// Which physical GPU, in dcgm-exporter's terms, so Prometheus joins gpugate's series with
/// DCGM's: `gpu` is NVML's index (never wgpu's enumeration order, which is not nvidia-smi's),
/// `UUID` and `modelName` NVML's, `pci_bus_id` NVML's spelling (`00000000:3B:00.0`). Without
/// NVML only the PCI bus id is known (still in NVML's spelling); a software adapter has none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
}

impl Fingerprint {
    pub fn from_info(info: &wgpu::AdapterInfo) -> Self {
        let is_cpu = info.device_type == wgpu::DeviceType::Cpu;
        Fingerprint {
            name: info.name.clone(),
            vendor_id: info.vendor,
            device_id: info.device,
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            backend: info.backend.to_str().to_string(),
            cpu_model: is_cpu.then(host_cpu_model),
        }
    }

    /// The baseline file stem: the adapter name sanitised the way NVIDIA GPU feature discovery does
    /// (`NVIDIA H100 80GB HBM3` → `NVIDIA-H100-80GB-HBM3`), plus the backend. A software adapter
    /// also carries the host CPU, since its timings are that CPU's.
    pub fn device_key(&self) -> String {
        let mut key = sanitize(&self.name);
        if let Some(cpu) = &self.cpu_model {
            key.push_str("-on-");
            key.push_str(&sanitize(cpu));
        }
        key.push('-');
        key.push_str(&self.backend);
        key
    }

    pub fn is_software(&self) -> bool {
        self.device_type == "Cpu"
    }

    pub fn driver_string(&self) -> String {
        format!("{} {}", self.driver, self.driver_info)
            .trim()
            .to_string()
    }
}

/// Spaces and punctuation become single `-`; trademark marks are dropped.
pub fn sanitize(name: &str) -> String {
    let cleaned = name
        .replace("(R)", "")
        .replace("(TM)", "")
        .replace("(tm)", "");
    let mut out = String::new();
    for c in cleaned.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Test-only: replaces the host CPU model in software device keys, so the test suite proves on
/// any one machine that nothing in it depends on the host matching a shipped baseline.
pub const TEST_CPU_MODEL_ENV: &str = "GPUGATE_TEST_CPU_MODEL";

/// The host CPU model from `/proc/cpuinfo`, or the architecture where that is unavailable.
pub fn host_cpu_model() -> String {
    if let Some(model) = std::env::var(TEST_CPU_MODEL_ENV)
        .ok()
        .filter(|m| !m.trim().is_empty())
    {
        return model;
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Mesa's Vulkan drivers (lavapipe among them) print "XDG_RUNTIME_DIR is invalid or not set" at
/// every start when the variable is missing, as in containers, CI jobs and ssh sessions. gpugate
/// draws nothing, so a private empty directory satisfies them. Call before any thread starts.
pub fn ensure_runtime_dir() {
    let valid =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if valid {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
            return; // no /proc: leave it to the driver's warning
        };
        let dir = std::env::temp_dir().join(format!("gpugate-runtime-{uid}"));
        // Create it private, or find it there already. A name in a shared /tmp may have been
        // planted by someone else: use it only if it is our own private directory, and never
        // through a symlink.
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| {
            m.file_type().is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0
        });
        if ours {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}

/// How shader modules are compiled. Trusted is what is measured by default: the kernels are ours,
/// every index is proven in bounds by the kernel's own guards and the parameter bounds checked
/// before a baseline or run is accepted, and the CPU-reference tests run them at odd and edge
/// sizes. Checked keeps wgpu's WebGPU-safe path (for debugging a kernel that misbehaves). The mode
/// enters every kernel's hash, so a baseline recorded in one mode is never judged in the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ShaderChecks {
    /// `create_shader_module_trusted` with no runtime checks (bounds, loop bounding, integer
    /// division), workgroup memory not zero-initialised, no indirect-call validation.
    #[default]
    Trusted,
    /// `create_shader_module`: runtime bounds checks, bounded loops, guarded integer division,
    /// zero-initialised workgroup memory, indirect-call validation (wgpu's defaults).
    Checked,
}

impl ShaderChecks {
    pub fn name(self) -> &'static str {
        match self {
            ShaderChecks::Trusted => "trusted",
            ShaderChecks::Checked => "checked",
        }
    }

    /// Whether pipelines zero workgroup memory before a dispatch: only in checked mode, since
    /// every kernel writes its workgroup memory before reading it.
    pub fn zero_workgroup_memory(self) -> bool {
        self == ShaderChecks::Checked
    }

    fn instance_flags(self) -> wgpu::InstanceFlags {
        let flags = wgpu::InstanceFlags::default();
        match self {
            // The one indirect dispatch (lattice_bfs's `expand`) gets its workgroup count from
            // its own `advance` entry point, which clamps it to 65535, the WebGPU minimum limit.
            ShaderChecks::Trusted => flags - wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL,
            ShaderChecks::Checked => flags,
        }
    }
}

impl fmt::Display for ShaderChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to choose the adapter: `--adapter` / `WGPU_ADAPTER_NAME` and `--backend` / `WGPU_BACKEND`,
/// and how to compile shaders on it (`--shader-checks`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdapterChoice {
    pub name_contains: Option<String>,
    pub backend: Option<String>,
    /// One GPU, by PCI bus id (`0000:3b:00.0`, any spelling) or NVML UUID (`GPU-…`): identical
    /// GPUs share a name, so `name_contains` cannot tell them apart.
    pub gpu: Option<String>,
    pub shader_checks: ShaderChecks,
}

impl AdapterChoice {
    fn backends(&self) -> Result<wgpu::Backends> {
        match &self.backend {
            None => Ok(wgpu::Backends::all()),
            Some(list) => {
                // wgpu's GL backend (its `gles` feature) is not built: GL has no GPU timestamp
                // queries, and every GPU gpugate validates has Vulkan, Metal or D3D12.
                let offered = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
                let b = wgpu::Backends::from_comma_list(list);
                if b.is_empty() || !offered.contains(b) {
                    Err(Error::Usage(format!(
                        "--backend {list:?}: expected vulkan, metal or dx12 (OpenGL is not \
                         offered: it has no GPU timestamp queries)"
                    )))
                } else {
                    Ok(b)
                }
            }
        }
    }
}

/// Better adapters sort first: discrete, integrated, virtual, CPU; native APIs before GL.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let api = u8::from(info.backend == wgpu::Backend::Gl);
    (kind, api)
}

/// The adapters `choice` allows, best first: its backends, then `--adapter`'s name and `--gpu`'s
/// PCI bus id or UUID. An error names what was asked for and what is there.
fn candidates(choice: &AdapterChoice) -> Result<Vec<wgpu::Adapter>> {
    let mut adapters = enumerate(choice)?;
    if adapters.is_empty() {
        return Err(Error::NoAdapter(
            "wgpu found none; on Debian install the Vulkan loader and a driver: \
             `apt-get install libvulkan1 mesa-vulkan-drivers` (software Vulkan), \
             or the GPU vendor's Vulkan driver"
                .into(),
        ));
    }
    let describe = |adapters: &[wgpu::Adapter]| {
        adapters
            .iter()
            .map(|a| {
                let info = a.get_info();
                match info.device_pci_bus_id.as_str() {
                    "" => info.name,
                    bus => format!("{} at {bus}", info.name),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(wanted) = &choice.name_contains {
        let needle = wanted.to_lowercase();
        let present = describe(&adapters);
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&needle));
        if adapters.is_empty() {
            return Err(Error::AdapterNotFound {
                wanted: format!("--adapter {wanted:?}"),
                present,
            });
        }
    }
    if let Some(wanted) = &choice.gpu {
        let bus_id = bus_id_of(wanted)?;
        let present = describe(&adapters);
        adapters.retain(|a| {
            crate::telemetry::same_pci_bus_id(&a.get_info().device_pci_bus_id, &bus_id)
        });
        if adapters.is_empty() {
            return Err(Error::AdapterNotFound {
                wanted: format!("--gpu {wanted}"),
                present,
            });
        }
    }
    Ok(adapters)
}

/// The PCI bus id `--gpu` names: itself, or the one NVML gives the UUID.
fn bus_id_of(selector: &str) -> Result<String> {
    let selector = selector.trim();
    if crate::telemetry::PciAddress::parse(selector).is_some() {
        return Ok(selector.to_string());
    }
    let gpus = crate::telemetry::nvml_gpus().map_err(|why| {
        Error::Usage(format!(
            "--gpu {selector}: not a PCI bus id (domain:bus:device.function), and a UUID can only \
             be looked up through NVML: {why}"
        ))
    })?;
    gpus.iter()
        .find(|g| {
            g.uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(selector))
        })
        .and_then(|g| g.pci_bus_id.clone())
        .ok_or_else(|| Error::AdapterNotFound {
            wanted: format!("--gpu {selector}"),
            present: gpus
                .iter()
                .map(|g| g.uuid.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One GPU to validate: the choice that opens exactly it, in this process or a child, and its
/// identity in dcgm-exporter's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuTarget {
    pub choice: AdapterChoice,
    pub adapter: String,
    pub identity: GpuIdentity,
}

/// Every GPU `choice` allows, one per physical device (through its best backend), in NVML's
/// index order where NVML knows them, else by PCI bus id. Adapters are told apart by PCI bus id
/// only — never by enumeration order, which differs between Vulkan and NVML. Where an adapter
/// reports no bus id, GPUs cannot be told apart: the best adapter alone, as `Gpu::open` picks.
pub fn gpus(choice: &AdapterChoice) -> Result<Vec<GpuTarget>> {
    let infos: Vec<wgpu::AdapterInfo> = candidates(choice)?.iter().map(|a| a.get_info()).collect();
    let nvml = crate::telemetry::nvml_gpus().unwrap_or_default();
    let mut targets: Vec<GpuTarget> = distinct_gpus(&infos)
        .into_iter()
        .map(|info| {
            let bus = info.device_pci_bus_id.trim();
            GpuTarget {
                choice: AdapterChoice {
                    gpu: (!bus.is_empty()).then(|| bus.to_string()),
                    ..choice.clone()
                },
                adapter: info.name.clone(),
                identity: identify(bus, &nvml),
            }
        })
        .collect();
    targets.sort_by_key(|t| {
        (
            t.identity.index.is_none(),
            t.identity.index,
            t.identity.pci_bus_id.clone(),
        )
    });
    Ok(targets)
}

/// The physical GPUs among `infos` (sorted best first): the first adapter of each PCI bus id;
/// software adapters only when there is no hardware one; the best adapter alone when a hardware
/// adapter has no bus id to tell it apart by.
fn distinct_gpus(infos: &[wgpu::AdapterInfo]) -> Vec<&wgpu::AdapterInfo> {
    let hardware: Vec<&wgpu::AdapterInfo> = infos
        .iter()
        .filter(|i| i.device_type != wgpu::DeviceType::Cpu)
        .collect();
    if hardware.is_empty()
        || hardware
            .iter()
            .any(|i| i.device_pci_bus_id.trim().is_empty())
    {
        return hardware
            .first()
            .copied()
            .or(infos.first())
            .into_iter()
            .collect();
    }
    let mut seen: Vec<&str> = Vec::new();
    hardware
        .into_iter()
        .filter(|i| {
            let bus = i.device_pci_bus_id.as_str();
            let new = !seen
                .iter()
                .any(|s| crate::telemetry::same_pci_bus_id(s, bus));
            seen.push(bus);
            new
        })
        .collect()
}

/// The identity of the GPU at PCI bus id `bus` (wgpu's spelling; empty when unknown): NVML's,
/// matched by bus id, where NVML lists it; else the bus id alone, spelled as NVML spells it.
pub fn identify(bus: &str, nvml: &[GpuIdentity]) -> GpuIdentity {
    let bus = bus.trim();
    if bus.is_empty() {
        return GpuIdentity::default();
    }
    nvml.iter()
        .find(|g| {
            g.pci_bus_id
                .as_deref()
                .is_some_and(|b| crate::telemetry::same_pci_bus_id(b, bus))
        })
        .cloned()
        .unwrap_or_else(|| GpuIdentity {
            pci_bus_id: Some(
                crate::telemetry::PciAddress::parse(bus)
                    .map_or_else(|| bus.to_string(), |a| a.nvml_spelling()),
            ),
            ..GpuIdentity::default()
        })
}

/// Every adapter the instance sees, best first.
pub fn enumerate(choice: &AdapterChoice) -> Result<Vec<wgpu::Adapter>> {
    let desc = wgpu::InstanceDescriptor {
        backends: choice.backends()?,
        flags: choice.shader_checks.instance_flags(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    };
    let instance = wgpu::Instance::new(desc);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters.retain(|a| a.get_info().backend != wgpu::Backend::Noop);
    adapters.sort_by_key(|a| preference(&a.get_info()));
    Ok(adapters)
}

/// Everything gpugate asks for when the adapter has it: timestamps for the sampler, and the shader
/// features of the kernels that need them (f16, subgroups, cooperative matrices).
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
}

/// An opened device with what the sampler needs to know about it.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub fingerprint: Fingerprint,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// GPU timestamps around a compute pass are available.
    pub timestamps: bool,
    /// Cooperative-matrix shapes the adapter supports (empty unless that feature was enabled).
    pub cooperative_matrix: Vec<wgpu::CooperativeMatrixProperties>,
    /// How this device compiles shader modules ([`Gpu::shader_module`]).
    pub shader_checks: ShaderChecks,
    /// When GPU waits must end: the current kernel's deadline, set by [`Gpu::within`].
    deadline: Mutex<Option<Instant>>,
    /// Why the device was lost, once wgpu said so.
    lost: Arc<Mutex<Option<String>>>,
}

impl Gpu {
    /// Pick the best adapter allowed by `choice` and open it with its own limits and timestamp queries.
    pub fn open(choice: &AdapterChoice) -> Result<Gpu> {
        let adapter = candidates(choice)?
            .into_iter()
            .next()
            .expect("candidates are never empty");
        Self::from_adapter(adapter, choice.shader_checks)
    }

    /// This GPU in dcgm-exporter's terms (NVML looked up by PCI bus id); None where the adapter
    /// reports no bus id (a software adapter).
    pub fn identity(&self) -> Option<GpuIdentity> {
        let nvml = crate::telemetry::nvml_gpus().unwrap_or_default();
        let identity = identify(&self.info.device_pci_bus_id, &nvml);
        (identity != GpuIdentity::default()).then_some(identity)
    }

    fn from_adapter(adapter: wgpu::Adapter, shader_checks: ShaderChecks) -> Result<Gpu> {
        let info = adapter.get_info();
        let available = adapter.features();
        let mut features = available & wanted_features();
        let cooperative_matrix =
            if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
                adapter.cooperative_matrix_properties()
            } else {
                vec![]
            };
        // Without a shape to use, the experimental feature is not requested at all.
        if cooperative_matrix.is_empty() {
            features.remove(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpugate"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: if cooperative_matrix.is_empty() {
                wgpu::ExperimentalFeatures::disabled()
            } else {
                // SAFETY: the only experimental feature requested is cooperative matrices, used
                // by hgemm_coop alone and only after it checked the adapter's matrix shapes.
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            },
            ..Default::default()
        }))
        .map_err(|e| Error::DeviceRequest {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        // Errors outside an error scope are logged, never a panic (wgpu's default handler panics).
        device.on_uncaptured_error(std::sync::Arc::new(|e: wgpu::Error| {
            tracing::error!("uncaptured GPU error: {e}");
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_by_callback = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            tracing::error!(?reason, "GPU device lost: {message}");
            *lost_by_callback.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("device lost ({reason:?}): {message}"));
        });
        let fingerprint = Fingerprint::from_info(&info);
        tracing::info!(
            adapter = %info.name,
            backend = %fingerprint.backend,
            device_type = %fingerprint.device_type,
            driver = %fingerprint.driver_string(),
            vendor_id = format_args!("{:#06x}", info.vendor),
            device_id = format_args!("{:#06x}", info.device),
            timestamps = features.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_features = ?(features - wgpu::Features::TIMESTAMP_QUERY
                - wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
                - wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
            key = %fingerprint.device_key(),
            "device acquired"
        );
        Ok(Gpu {
            device,
            queue,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            info,
            fingerprint,
            limits,
            features,
            cooperative_matrix,
            shader_checks,
            deadline: Mutex::new(None),
            lost,
        })
    }

    /// A shader module compiled as [`Gpu::shader_checks`] says.
    pub fn shader_module(&self, label: &str, wgsl: &str) -> wgpu::ShaderModule {
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(wgsl.into()),
        };
        match self.shader_checks {
            ShaderChecks::Checked => self.device.create_shader_module(desc),
            // SAFETY: only gpugate's own kernels (`shaders/`, compiled in) come here. Each one
            // indexes only within its bindings, proven by its guards for every parameter value the
            // kernel accepts (`Kernel::params`, checked before any instance is prepared), loops a
            // bounded number of times, divides by non-zero values only, and writes workgroup
            // memory before reading it; the CPU-reference tests run each at odd and edge sizes in
            // this mode.
            ShaderChecks::Trusted => unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            },
        }
    }

    /// The compilation options of every compute pipeline: workgroup memory is zeroed only in
    /// checked mode.
    pub fn compilation_options(&self) -> wgpu::PipelineCompilationOptions<'static> {
        wgpu::PipelineCompilationOptions {
            zero_initialize_workgroup_memory: self.shader_checks.zero_workgroup_memory(),
            ..Default::default()
        }
    }

    /// Run `f` with every GPU wait in it ending by `deadline` at the latest: past it a wait fails
    /// with [`Error::Fault`].
    pub fn within<T>(&self, deadline: Instant, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let previous = self.set_deadline(Some(deadline));
        let out = f();
        self.set_deadline(previous);
        out
    }

    fn set_deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        std::mem::replace(
            &mut *self.deadline.lock().unwrap_or_else(|e| e.into_inner()),
            deadline,
        )
    }

    /// The reason the device was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// An [`Error::Fault`] naming `what` if the device was lost. Polls once without blocking
    /// first: wgpu reports a loss to the callback from its maintenance, which a poll runs.
    pub fn check_lost(&self, what: &str) -> Result<()> {
        let _ = self.device.poll(wgpu::PollType::Poll);
        match self.lost() {
            Some(reason) => Err(Error::Fault {
                what: what.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Test-only fault injection (see [`crate::runner::TEST_FAULT_ENV`]): lose the device as a
    /// driver reset would.
    pub fn lose_for_test(&self) {
        self.device.destroy();
    }

    /// Run `f` with GPU validation and out-of-memory errors captured: they come back as
    /// [`Error::Gpu`] naming `what`, and take precedence over whatever `f` failed with after them.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let captured = pollster::block_on(validation.pop()).or(pollster::block_on(oom.pop()));
        match captured {
            Some(e) => Err(Error::Gpu {
                kernel: what.to_string(),
                reason: e.to_string(),
            }),
            None => out,
        }
    }

    /// Block until all submitted work is done, or until the deadline set by [`Gpu::within`]
    /// ([`DEFAULT_WAIT`] from now without one). Past it, or on a lost device, an
    /// [`Error::Fault`] naming `what`; another failure is an [`Error::Gpu`].
    pub fn wait(&self, what: &str) -> Result<()> {
        let fault = |reason: String| Error::Fault {
            what: what.to_string(),
            reason,
        };
        if let Some(reason) = self.lost() {
            return Err(fault(reason));
        }
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = deadline.map_or(DEFAULT_WAIT, |d| {
            d.saturating_duration_since(Instant::now())
        });
        // On Vulkan this is a fence wait with this timeout (vkWaitSemaphores/vkWaitForFences);
        // wgpu answers PollError::Timeout when the submission is not done by then.
        let polled = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(timeout),
        });
        if let Some(reason) = self.lost() {
            return Err(fault(reason));
        }
        match polled {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => {
                self.abandon();
                Err(fault(match deadline {
                    Some(_) => "the GPU did not finish its work by the kernel's deadline \
                                (--deadline; by default 2 × (longest warm-up + --max-time) + \
                                10 s): the device may be hung, or a sample takes far longer \
                                than the time caps allow"
                        .to_string(),
                    None => format!(
                        "the GPU did not finish its work within {}; the device may be hung",
                        humantime::format_duration(DEFAULT_WAIT)
                    ),
                }))
            }
            Err(e) => Err(Error::Gpu {
                kernel: what.to_string(),
                reason: format!("poll: {e}"),
            }),
        }
    }

    /// After a wait timed out the GPU may never finish, and dropping the queue waits for it with
    /// no timeout (wgpu's `Queue::drop` waits for idle). Keep one handle alive for the rest of
    /// the process, so the fault is reported and the process exits instead of hanging.
    fn abandon(&self) {
        std::mem::forget(self.queue.clone());
    }

    /// Map a `MAP_READ` buffer once the work writing it is done, copy its bytes out, unmap it.
    pub fn read_mapped(&self, what: &str, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
        let err = |reason: String| Error::Gpu {
            kernel: what.to_string(),
            reason,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        buffer
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
        self.wait(what)?;
        rx.recv()
            .map_err(|e| err(format!("map: {e}")))?
            .map_err(|e| err(format!("map: {e}")))?;
        let bytes = buffer
            .slice(..)
            .get_mapped_range()
            .map_err(|e| err(format!("mapped range: {e}")))?
            .to_vec();
        buffer.unmap();
        Ok(bytes)
    }

    /// Largest storage buffer a kernel may bind on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Software adapters get small problem sizes so CI stays fast.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, kind: wgpu::DeviceType, bus: &str) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: name.into(),
            vendor: 0x10de,
            device: 1,
            device_type: kind,
            device_pci_bus_id: bus.into(),
            driver: String::new(),
            driver_info: String::new(),
            backend: wgpu::Backend::Vulkan,
            subgroup_min_size: 32,
            subgroup_max_size: 32,
            transient_saves_memory: None,
            limit_bucket: None,
        }
    }

    #[test]
    fn gpus_are_told_apart_by_pci_bus_id_and_named_as_nvml_names_them() {
        use wgpu::DeviceType::{Cpu, DiscreteGpu};
        // Vulkan's order is not NVML's; lavapipe is left out beside hardware.
        let infos = [
            adapter("H100", DiscreteGpu, "0000:c1:00.0"),
            adapter("H100", DiscreteGpu, "0000:1b:00.0"),
            adapter("H100", DiscreteGpu, "0000:C1:00.0"),
            adapter("llvmpipe", Cpu, ""),
        ];
        let gpus = distinct_gpus(&infos);
        assert_eq!(
            gpus.iter()
                .map(|i| i.device_pci_bus_id.as_str())
                .collect::<Vec<_>>(),
            ["0000:c1:00.0", "0000:1b:00.0"],
            "one adapter per bus id, software left out"
        );
        let nvml = [
            GpuIdentity {
                index: Some(0),
                uuid: Some("GPU-aaa".into()),
                model_name: Some("NVIDIA H100 80GB HBM3".into()),
                pci_bus_id: Some("00000000:1B:00.0".into()),
            },
            GpuIdentity {
                index: Some(1),
                uuid: Some("GPU-bbb".into()),
                model_name: Some("NVIDIA H100 80GB HBM3".into()),
                pci_bus_id: Some("00000000:C1:00.0".into()),
            },
        ];
        assert_eq!(identify("0000:c1:00.0", &nvml), nvml[1]);
        assert_eq!(identify("0000:1b:00.0", &nvml), nvml[0]);
        // Without NVML (or a bus id it does not list): the bus id alone, in NVML's spelling.
        assert_eq!(
            identify("0000:1b:00.0", &[]),
            GpuIdentity {
                pci_bus_id: Some("00000000:1B:00.0".into()),
                ..GpuIdentity::default()
            }
        );
        assert_eq!(identify("", &nvml), GpuIdentity::default());
        // Only software: the best adapter. A GPU without a bus id cannot be told apart from
        // another: the best alone.
        let software = [adapter("llvmpipe", Cpu, ""), adapter("other", Cpu, "")];
        assert_eq!(distinct_gpus(&software).len(), 1);
        let unknown = [
            adapter("A", DiscreteGpu, "0000:01:00.0"),
            adapter("B", DiscreteGpu, ""),
        ];
        assert_eq!(
            distinct_gpus(&unknown)
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["A"]
        );
    }

    fn fp(name: &str, cpu: Option<&str>) -> Fingerprint {
        Fingerprint {
            name: name.into(),
            vendor_id: 0x10de,
            device_id: 0x2330,
            device_type: if cpu.is_some() { "Cpu" } else { "DiscreteGpu" }.into(),
            driver: "NVIDIA".into(),
            driver_info: "580.159.04".into(),
            backend: "vulkan".into(),
            cpu_model: cpu.map(String::from),
        }
    }

    #[test]
    fn device_keys_follow_gpu_feature_discovery() {
        assert_eq!(
            fp("NVIDIA H100 80GB HBM3", None).device_key(),
            "NVIDIA-H100-80GB-HBM3-vulkan"
        );
        assert_eq!(
            fp(
                "llvmpipe (LLVM 15.0.6, 256 bits)",
                Some("Intel(R) Xeon(R) Processor @ 2.50GHz")
            )
            .device_key(),
            "llvmpipe-LLVM-15.0.6-256-bits-on-Intel-Xeon-Processor-2.50GHz-vulkan"
        );
    }
}

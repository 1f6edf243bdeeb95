//! What the GPU was doing around a run: clocks, temperature, power, throttle reasons, utilisation
//! and the other processes on it, read through NVML where it is present.
//!
//! A timing only means something if the GPU ran at the clocks its baseline ran at and nobody else
//! was using it. This module records the evidence ([`Telemetry`]) and judges it ([`throttled`],
//! [`contended`], [`throttled_unlike`]); callers label a run rather than compare it silently.
//!
//! NVML is optional. `nvml-wrapper` opens `libnvidia-ml.so.1` with `dlopen` when a [`Probe`] is
//! opened, so the binary builds and runs without NVIDIA software; a missing library, an adapter
//! without a PCI bus id or a bus id NVML does not know all give [`TelemetrySource::Unavailable`]
//! with the reason, and every failed NVML call leaves a field empty. Nothing here panics or
//! returns an error: telemetry is a side channel and must never cost a measurement.

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::{Deserialize, Serialize};

/// GPU utilisation above this, just before a run, means someone else is using the GPU: between
/// our runs (each in a fresh process) it should be idle. NVML averages utilisation over its last
/// sample period (1/6 s to 1 s depending on the product), so the sample should be taken well after
/// the previous run's kernels, e.g. after the new process has opened its device.
pub const BUSY_UTILISATION_PCT: u32 = 10;

/// A run whose SM clock after the run is more than this fraction below the lowest one among its
/// baseline runs is treated as throttled: boost clocks on an idle-cooled GPU vary by a few percent
/// between runs, a power or thermal cap costs far more.
pub const CLOCK_DROP_FRACTION: f64 = 0.10;

/// Throttle reasons that slow a kernel down. The others NVML reports (`gpu_idle`,
/// `applications_clocks_setting`, `sync_boost`, `display_clock_setting`) describe an idle GPU or a
/// configured clock, which a baseline taken on the same node shares.
pub const SLOWING_REASONS: [&str; 5] = [
    "sw_power_cap",
    "hw_slowdown",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
];

/// NVML's throttle bits and the stable names they are stored under. Named here, not derived from
/// the bitflags' names, so a wrapper upgrade cannot rename what baselines already hold.
const REASON_NAMES: [(ThrottleReasons, &str); 9] = [
    (ThrottleReasons::GPU_IDLE, "gpu_idle"),
    (
        ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
        "applications_clocks_setting",
    ),
    (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
    (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
    (ThrottleReasons::SYNC_BOOST, "sync_boost"),
    (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
    (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
    (
        ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN,
        "hw_power_brake_slowdown",
    ),
    (
        ThrottleReasons::DISPLAY_CLOCK_SETTING,
        "display_clock_setting",
    ),
];

/// One NVML reading of the GPU. Every field is optional because NVML answers per call and per
/// product (MIG, vGPU and older boards refuse some): a missing reading is `None`, never a zero that
/// would read as "idle" or "no other processes".
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct GpuSample {
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    /// Names from [`SLOWING_REASONS`] and the benign ones (`gpu_idle`, …); empty when the clocks
    /// are not held back.
    pub throttle_reasons: Option<Vec<String>>,
    pub gpu_util_pct: Option<u32>,
    pub mem_util_pct: Option<u32>,
    /// PIDs of compute and graphics processes on this GPU other than the sampling process and its
    /// parent (the gpugate that started the measuring child), sorted. PIDs are as NVML reports
    /// them, which inside a PID namespace may be the host's.
    pub other_processes: Option<Vec<u32>>,
}

/// Where a run's telemetry came from, or why there is none.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TelemetrySource {
    /// The NVML device whose PCI bus id is the adapter's. `pci_bus_id` is NVML's spelling
    /// (`00000000:01:00.0`); `name` and `driver_version` are empty where NVML would not say.
    Nvml {
        #[serde(default)]
        device_index: u32,
        #[serde(default)]
        pci_bus_id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        driver_version: String,
    },
    Unavailable {
        #[serde(default)]
        reason: String,
    },
}

impl Default for TelemetrySource {
    /// What a run stored before telemetry existed reads as.
    fn default() -> Self {
        TelemetrySource::Unavailable {
            reason: "not recorded".to_string(),
        }
    }
}

/// The GPU's state just before and just after one run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Telemetry {
    pub source: TelemetrySource,
    pub before: Option<GpuSample>,
    pub after: Option<GpuSample>,
}

impl Telemetry {
    fn samples(&self) -> impl Iterator<Item = &GpuSample> {
        self.before.iter().chain(self.after.iter())
    }
}

/// NVML opened on the device behind one wgpu adapter. Open it once per process, before the timed
/// work: loading and initialising NVML takes milliseconds, and up to seconds on a GPU without
/// persistence mode.
pub struct Probe {
    state: State,
}

enum State {
    Ready {
        /// Boxed: the loaded library's symbol table is some 12 KB.
        nvml: Box<Nvml>,
        /// NVML's own spelling, to look the device up again for each sample (a `Device` borrows
        /// the `Nvml` and cannot be kept beside it).
        bus_id: String,
        source: TelemetrySource,
    },
    Unavailable(String),
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("source", &self.source())
            .finish()
    }
}

impl Probe {
    /// Opens NVML on the GPU whose PCI bus id is `pci_bus_id` (wgpu's
    /// `AdapterInfo::device_pci_bus_id`, e.g. `0000:01:00.0`; empty when the backend does not
    /// know). The device is found by bus id alone: enumeration order and names differ between
    /// NVML and Vulkan and would pick the wrong GPU on a multi-GPU node. Never fails; an
    /// unavailable probe remembers why and samples nothing.
    pub fn open(pci_bus_id: &str) -> Probe {
        let state = catch_unwind(AssertUnwindSafe(|| open_state(pci_bus_id)))
            .unwrap_or_else(|_| State::Unavailable("NVML panicked while opening".to_string()));
        Probe { state }
    }

    /// The GPU now; `None` when the probe is unavailable or NVML has lost the device.
    pub fn sample(&self) -> Option<GpuSample> {
        let State::Ready { nvml, bus_id, .. } = &self.state else {
            return None;
        };
        catch_unwind(AssertUnwindSafe(|| read_sample(nvml, bus_id)))
            .ok()
            .flatten()
    }

    /// A run's record: this probe's source with the samples taken around the run.
    pub fn telemetry(&self, before: Option<GpuSample>, after: Option<GpuSample>) -> Telemetry {
        Telemetry {
            source: self.source(),
            before,
            after,
        }
    }

    fn source(&self) -> TelemetrySource {
        match &self.state {
            State::Ready { source, .. } => source.clone(),
            State::Unavailable(reason) => TelemetrySource::Unavailable {
                reason: reason.clone(),
            },
        }
    }
}

/// Every GPU NVML sees, in NVML's index order: the identity dcgm-exporter labels its series
/// with. Why not, when NVML cannot be loaded or answer (no NVIDIA driver, a non-NVIDIA GPU).
pub fn nvml_gpus() -> std::result::Result<Vec<crate::device::GpuIdentity>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let nvml = Nvml::init().map_err(|e| match e {
            NvmlError::LibloadingError(e) => format!("NVML not loaded: {e}"),
            e => format!("NVML not initialised: {e}"),
        })?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML cannot count devices: {e}"))?;
        Ok((0..count)
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                Some(crate::device::GpuIdentity {
                    index: Some(index),
                    uuid: device.uuid().ok(),
                    model_name: device.name().ok(),
                    pci_bus_id: Some(device.pci_info().ok()?.bus_id),
                })
            })
            .collect())
    }))
    .unwrap_or_else(|_| Err("NVML panicked while listing devices".to_string()))
}

fn open_state(pci_bus_id: &str) -> State {
    let wanted = pci_bus_id.trim();
    if wanted.is_empty() {
        return State::Unavailable("adapter reports no PCI bus id".to_string());
    }
    let Some(want) = PciAddress::parse(wanted) else {
        return State::Unavailable(format!(
            "adapter PCI bus id {wanted:?} is not domain:bus:device.function"
        ));
    };
    let nvml = match Nvml::init() {
        Ok(nvml) => nvml,
        Err(NvmlError::LibloadingError(e)) => {
            return State::Unavailable(format!("NVML not loaded: {e}"))
        }
        Err(e) => return State::Unavailable(format!("NVML not initialised: {e}")),
    };
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(e) => return State::Unavailable(format!("NVML cannot count devices: {e}")),
    };
    let mut seen = Vec::new();
    let mut found = None;
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(device) => device,
            Err(e) => {
                seen.push(format!("#{index}: {e}"));
                continue;
            }
        };
        match device.pci_info() {
            Ok(pci) if PciAddress::parse(&pci.bus_id) == Some(want) => {
                let source = TelemetrySource::Nvml {
                    device_index: index,
                    pci_bus_id: pci.bus_id.clone(),
                    name: device.name().unwrap_or_default(),
                    driver_version: nvml.sys_driver_version().unwrap_or_default(),
                };
                found = Some((pci.bus_id, source));
                break;
            }
            Ok(pci) => seen.push(pci.bus_id),
            Err(e) => seen.push(format!("#{index}: {e}")),
        }
    }
    match found {
        Some((bus_id, source)) => State::Ready {
            nvml: Box::new(nvml),
            bus_id,
            source,
        },
        None => State::Unavailable(format!(
            "no NVML device matches PCI bus id {wanted} (NVML sees {})",
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        )),
    }
}

fn read_sample(nvml: &Nvml, bus_id: &str) -> Option<GpuSample> {
    let device = nvml.device_by_pci_bus_id(bus_id).ok()?;
    let utilisation = device.utilization_rates().ok();
    Some(GpuSample {
        sm_clock_mhz: device.clock_info(Clock::SM).ok(),
        mem_clock_mhz: device.clock_info(Clock::Memory).ok(),
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        power_w: device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        throttle_reasons: device.current_throttle_reasons().ok().map(reason_names),
        gpu_util_pct: utilisation.as_ref().map(|u| u.gpu),
        mem_util_pct: utilisation.as_ref().map(|u| u.memory),
        other_processes: other_processes(&device),
    })
}

fn reason_names(reasons: ThrottleReasons) -> Vec<String> {
    REASON_NAMES
        .iter()
        .filter(|(flag, _)| reasons.contains(*flag))
        .map(|(_, name)| name.to_string())
        .collect()
}

/// Compute processes only: on a workstation NVML lists the display server (Xorg, a compositor)
/// as a graphics process for as long as the desktop runs, and counting it would make every run
/// there `contended`. A graphics-only workload sharing the GPU is therefore not seen here (the
/// utilisation reading is the fallback where no list is available). `None` when NVML gave no list.
fn other_processes(device: &Device) -> Option<Vec<u32>> {
    let compute = device.running_compute_processes().ok()?;
    Some(others(compute.into_iter().map(|p| p.pid), &our_pids()))
}

/// This process and its parent: the gate runs each measurement in a child whose parent is the
/// gpugate that started it, and either may hold the GPU.
fn our_pids() -> Vec<u32> {
    #[allow(unused_mut)]
    let mut ours = vec![std::process::id()];
    #[cfg(unix)]
    ours.push(std::os::unix::process::parent_id());
    ours
}

fn others(pids: impl IntoIterator<Item = u32>, ours: &[u32]) -> Vec<u32> {
    let all: BTreeSet<u32> = pids.into_iter().collect();
    let others: Vec<u32> = all.iter().copied().filter(|p| !ours.contains(p)).collect();
    if all.iter().any(|p| ours.contains(p)) || others.len() > 1 {
        return others;
    }
    // None of NVML's PIDs is ours: in a container without the host's PID namespace (a pod
    // without hostPID) NVML reports host PIDs. This process holds the GPU while it measures, so
    // a single unknown PID is presumably us; only more than one is someone else.
    vec![]
}

/// A PCI address, `domain:bus:device.function`. wgpu spells it `0000:01:00.0`, NVML
/// `00000000:01:00.0`; the numbers are what identify the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddress {
    /// Parses `domain:bus:device.function` (domain up to 8 hex digits) or `bus:device.function`
    /// (domain 0), hex in either case, surrounding whitespace ignored; `None` for anything else,
    /// including out-of-range device (> 0x1f) or function (> 7) numbers.
    pub fn parse(text: &str) -> Option<PciAddress> {
        let (head, function) = text.trim().rsplit_once('.')?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [domain, bus, device] => (hex(domain, 8)?, *bus, *device),
            [bus, device] => (0, *bus, *device),
            _ => return None,
        };
        let (bus, device, function) = (hex(bus, 2)?, hex(device, 2)?, hex(function, 1)?);
        if device > 0x1f || function > 7 {
            return None;
        }
        Some(PciAddress {
            domain,
            bus: u8::try_from(bus).ok()?,
            device: u8::try_from(device).ok()?,
            function: u8::try_from(function).ok()?,
        })
    }
}

impl PciAddress {
    /// As NVML and dcgm-exporter spell it (`00000000:3B:00.0`), so the series of a GPU carry one
    /// spelling whether or not NVML answered.
    pub fn nvml_spelling(&self) -> String {
        format!(
            "{:08X}:{:02X}:{:02X}.{:X}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Hex digits only (no sign, no `0x`), at most `max_digits` of them.
fn hex(text: &str, max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// Whether two PCI bus ids name the same device, whatever the spelling; false if either is not a
/// bus id.
pub fn same_pci_bus_id(a: &str, b: &str) -> bool {
    matches!((PciAddress::parse(a), PciAddress::parse(b)), (Some(a), Some(b)) if a == b)
}

/// The throttle reasons in `sample` that slow a kernel down (see [`SLOWING_REASONS`]).
pub fn throttled(sample: &GpuSample) -> Vec<&str> {
    sample
        .throttle_reasons
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|r| SLOWING_REASONS.contains(r))
        .collect()
}

/// Why the run shared the GPU, if it did: other compute processes on it before or after the run;
/// where NVML gave no process list, GPU utilisation above [`BUSY_UTILISATION_PCT`] just before
/// it (a reading NVML averages over up to a second, so it can still hold our own previous run's
/// load: only a fallback). Such a run is marked contended, not judged. Missing readings are not
/// evidence.
pub fn contended(t: &Telemetry) -> Option<String> {
    let mut why = Vec::new();
    for (when, sample) in [("before", &t.before), ("after", &t.after)] {
        let pids = sample.as_ref().and_then(|s| s.other_processes.as_ref());
        if let Some(pids) = pids.filter(|p| !p.is_empty()) {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            let plural = if pids.len() == 1 { "" } else { "s" };
            why.push(format!(
                "PID{plural} {} on the GPU {when} the run",
                list.join(", ")
            ));
        }
    }
    let listed = [&t.before, &t.after]
        .iter()
        .any(|s| s.as_ref().is_some_and(|s| s.other_processes.is_some()));
    let busy = t
        .before
        .as_ref()
        .and_then(|s| s.gpu_util_pct)
        .filter(|_| !listed);
    if let Some(pct) = busy.filter(|&pct| pct > BUSY_UTILISATION_PCT) {
        why.push(format!(
            "GPU utilisation {pct} % before the run (idle is at most {BUSY_UTILISATION_PCT} %)"
        ));
    }
    (!why.is_empty()).then(|| format!("GPU busy with other work: {}", why.join("; ")))
}

/// Why the current run was throttled in a way its baseline runs were not, if it was:
/// - a slowing throttle reason (before or after the run) that no baseline sample showed, judged
///   only if some baseline sample reported throttle reasons at all;
/// - an SM clock after the run more than [`CLOCK_DROP_FRACTION`] below the lowest among the
///   baseline runs'. Samples flagged `gpu_idle` are left out of this: their clock is already
///   falling back to idle and says nothing about the run.
///
/// `None` when either side has no samples: absence is not evidence. A throttle that every
/// baseline run shared is the device's normal state, so it is not reported.
pub fn throttled_unlike(baseline: &[Telemetry], current: &Telemetry) -> Option<String> {
    let sampled: Vec<&Telemetry> = baseline
        .iter()
        .filter(|t| t.samples().next().is_some())
        .collect();
    if sampled.is_empty() || current.samples().next().is_none() {
        return None;
    }
    let runs = match sampled.len() {
        1 => "the baseline run".to_string(),
        n => format!("any of {n} baseline runs"),
    };
    let mut why = Vec::new();

    let baseline_samples = || sampled.iter().flat_map(|t| t.samples());
    if baseline_samples().any(|s| s.throttle_reasons.is_some()) {
        let seen: BTreeSet<&str> = baseline_samples().flat_map(throttled).collect();
        let new: BTreeSet<&str> = current
            .samples()
            .flat_map(throttled)
            .filter(|r| !seen.contains(r))
            .collect();
        if !new.is_empty() {
            let new: Vec<&str> = new.into_iter().collect();
            why.push(format!("{} not seen in {runs}", new.join(", ")));
        }
    }

    let floor = sampled.iter().filter_map(|t| running_sm_clock(t)).min();
    if let (Some(floor), Some(now)) = (floor, running_sm_clock(current)) {
        let drop = 1.0 - f64::from(now) / f64::from(floor.max(1));
        if drop > CLOCK_DROP_FRACTION {
            why.push(format!(
                "SM clock {now} MHz after the run, {:.0} % below the lowest in {runs} ({floor} MHz)",
                drop * 100.0
            ));
        }
    }

    (!why.is_empty()).then(|| format!("throttled unlike its baseline: {}", why.join("; ")))
}

/// The SM clock after the run, unless that sample shows the GPU already idle.
fn running_sm_clock(t: &Telemetry) -> Option<u32> {
    let after = t.after.as_ref()?;
    let idle = after
        .throttle_reasons
        .iter()
        .flatten()
        .any(|r| r == "gpu_idle");
    if idle {
        return None;
    }
    after.sm_clock_mhz
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sm: u32, reasons: &[&str]) -> GpuSample {
        GpuSample {
            sm_clock_mhz: Some(sm),
            mem_clock_mhz: Some(2619),
            temperature_c: Some(40),
            power_w: Some(120.5),
            throttle_reasons: Some(reasons.iter().map(|r| r.to_string()).collect()),
            gpu_util_pct: Some(0),
            mem_util_pct: Some(0),
            other_processes: Some(vec![]),
        }
    }

    fn nvml_source() -> TelemetrySource {
        TelemetrySource::Nvml {
            device_index: 0,
            pci_bus_id: "00000000:01:00.0".to_string(),
            name: "NVIDIA H100 80GB HBM3".to_string(),
            driver_version: "580.65.06".to_string(),
        }
    }

    fn run(before: GpuSample, after: GpuSample) -> Telemetry {
        Telemetry {
            source: nvml_source(),
            before: Some(before),
            after: Some(after),
        }
    }

    #[test]
    fn wgpu_and_nvml_spellings_name_the_same_device() {
        assert!(same_pci_bus_id("0000:01:00.0", "00000000:01:00.0"));
        assert!(same_pci_bus_id("0000:c1:00.0", "00000000:C1:00.0"));
        assert!(same_pci_bus_id("0001:9a:1f.7", "00000001:9A:1F.7"));
        assert!(same_pci_bus_id(" 0000:01:00.0\n", "01:00.0"));
        assert!(!same_pci_bus_id("0000:01:00.0", "00000000:02:00.0"));
        assert!(!same_pci_bus_id("0000:01:00.0", "00000000:01:00.1"));
        assert!(!same_pci_bus_id("0000:01:00.0", "00000001:01:00.0"));
        assert_eq!(
            PciAddress::parse("00000000:C1:00.0").map(|a| a.to_string()),
            Some("0000:c1:00.0".to_string())
        );
    }

    #[test]
    fn junk_is_not_a_bus_id() {
        for junk in [
            "",
            " ",
            "garbage",
            "0000:01:00",
            "0000:01:00.",
            "0000:01:00.8",
            "0000:01:20.0",
            "0000:101:00.0",
            "000000000:01:00.0",
            "+000:01:00.0",
            "0000:+1:00.0",
            "0x00:01:00.0",
            "0000::00.0",
            "0000:01:00.0.0",
            "0:0000:01:00.0",
            "0000:01:00.0\0",
            "0000:01:0g.0",
            "PCI\\VEN_10DE&DEV_2330",
            "é:01:00.0",
        ] {
            assert_eq!(PciAddress::parse(junk), None, "{junk:?}");
            assert!(!same_pci_bus_id(junk, junk), "{junk:?}");
        }
    }

    #[test]
    fn throttle_bits_get_stable_names() {
        let bits = ThrottleReasons::SW_POWER_CAP | ThrottleReasons::GPU_IDLE;
        assert_eq!(reason_names(bits), ["gpu_idle", "sw_power_cap"]);
        assert!(reason_names(ThrottleReasons::NONE).is_empty());
        let all = REASON_NAMES
            .iter()
            .fold(ThrottleReasons::empty(), |acc, (flag, _)| acc | *flag);
        assert_eq!(reason_names(all).len(), REASON_NAMES.len());
        for slowing in SLOWING_REASONS {
            assert!(REASON_NAMES.iter().any(|(_, name)| *name == slowing));
        }
    }

    #[test]
    fn only_slowing_reasons_count_as_throttled() {
        let s = sample(
            1980,
            &[
                "gpu_idle",
                "applications_clocks_setting",
                "sync_boost",
                "display_clock_setting",
            ],
        );
        assert!(throttled(&s).is_empty());
        let s = sample(1200, &["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]);
        assert_eq!(throttled(&s), ["sw_power_cap", "hw_thermal_slowdown"]);
        assert!(throttled(&GpuSample::default()).is_empty());
    }

    #[test]
    fn our_own_processes_are_not_others() {
        assert_eq!(others([7, 3, 100, 7, 42], &[100, 42]), [3, 7]);
        assert!(others([100], &[100, 1]).is_empty());
        // Host PIDs seen from a container: one is us, two are someone else too.
        assert!(others([5000], &[100, 1]).is_empty());
        assert_eq!(others([5000, 6000], &[100, 1]), [5000, 6000]);
        let ours = our_pids();
        assert!(ours.contains(&std::process::id()));
    }

    #[test]
    fn other_processes_or_busy_gpu_mean_contended() {
        let idle = run(sample(1980, &[]), sample(1980, &[]));
        assert_eq!(contended(&idle), None);

        let mut shared = idle.clone();
        shared.before.as_mut().unwrap().other_processes = Some(vec![4242]);
        shared.after.as_mut().unwrap().other_processes = Some(vec![4242, 4343]);
        let why = contended(&shared).unwrap();
        assert!(why.contains("PID 4242 on the GPU before"), "{why}");
        assert!(why.contains("PIDs 4242, 4343 on the GPU after"), "{why}");

        // Utilisation is only the fallback: with a process list (here: nobody else), a busy
        // reading may be our own previous kernel and is not contention.
        let mut busy = idle.clone();
        busy.before.as_mut().unwrap().gpu_util_pct = Some(87);
        assert_eq!(contended(&busy), None);
        for s in [&mut busy.before, &mut busy.after] {
            s.as_mut().unwrap().other_processes = None;
        }
        let why = contended(&busy).unwrap();
        assert!(why.contains("87 %"), "{why}");

        let mut at_threshold = busy.clone();
        at_threshold.before.as_mut().unwrap().gpu_util_pct = Some(BUSY_UTILISATION_PCT);
        assert_eq!(contended(&at_threshold), None);

        // After the run the utilisation is our own.
        let mut ours = idle.clone();
        ours.after.as_mut().unwrap().gpu_util_pct = Some(100);
        assert_eq!(contended(&ours), None);
    }

    #[test]
    fn missing_readings_are_not_contention() {
        assert_eq!(contended(&Telemetry::default()), None);
        let unknown = run(GpuSample::default(), GpuSample::default());
        assert_eq!(contended(&unknown), None);
    }

    #[test]
    fn a_new_slowing_reason_is_throttling_unlike_the_baseline() {
        let baseline = vec![run(sample(345, &["gpu_idle"]), sample(1980, &[])); 5];
        let current = run(
            sample(345, &["gpu_idle"]),
            sample(1900, &["hw_thermal_slowdown"]),
        );
        let why = throttled_unlike(&baseline, &current).unwrap();
        assert!(why.contains("hw_thermal_slowdown"), "{why}");
        assert!(why.contains("5 baseline runs"), "{why}");

        // A throttle the baseline already showed is the device's normal state.
        let mut capped = baseline.clone();
        capped[2].after = Some(sample(1900, &["hw_thermal_slowdown"]));
        assert_eq!(throttled_unlike(&capped, &current), None);

        // Benign reasons are not throttling.
        let benign = run(sample(345, &["gpu_idle"]), sample(1980, &["sync_boost"]));
        assert_eq!(throttled_unlike(&baseline, &benign), None);
    }

    #[test]
    fn a_clock_well_below_the_baselines_lowest_is_throttling() {
        let mut baseline = vec![run(sample(345, &["gpu_idle"]), sample(1980, &[])); 3];
        baseline[1].after = Some(sample(1800, &[]));
        let near = run(sample(345, &["gpu_idle"]), sample(1700, &[]));
        assert_eq!(throttled_unlike(&baseline, &near), None);

        let slow = run(sample(345, &["gpu_idle"]), sample(1500, &[]));
        let why = throttled_unlike(&baseline, &slow).unwrap();
        assert!(why.contains("1500 MHz"), "{why}");
        assert!(why.contains("1800 MHz"), "{why}");

        // An after-sample that already shows the GPU idle says nothing about the run's clock.
        let idle_after = run(sample(345, &["gpu_idle"]), sample(345, &["gpu_idle"]));
        assert_eq!(throttled_unlike(&baseline, &idle_after), None);

        // A zero baseline clock (a broken reading) does not divide by zero.
        let mut zero = baseline.clone();
        zero[0].after = Some(sample(0, &[]));
        assert_eq!(throttled_unlike(&zero, &slow), None);
    }

    #[test]
    fn absence_is_not_evidence_of_throttling() {
        let current = run(sample(345, &[]), sample(900, &["hw_slowdown"]));
        assert_eq!(throttled_unlike(&[], &current), None);
        let unrecorded = vec![Telemetry::default(); 4];
        assert_eq!(throttled_unlike(&unrecorded, &current), None);

        let baseline = vec![run(sample(345, &[]), sample(1980, &[])); 4];
        assert_eq!(throttled_unlike(&baseline, &Telemetry::default()), None);

        // Baselines whose GPU reported no throttle reasons or clocks cannot show a difference.
        let mute = vec![run(GpuSample::default(), GpuSample::default()); 4];
        assert_eq!(throttled_unlike(&mute, &current), None);
    }

    #[test]
    fn serde_round_trips_and_tolerates_old_records() {
        let t = run(sample(345, &["gpu_idle"]), sample(1980, &["sw_power_cap"]));
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""kind":"nvml""#), "{json}");
        assert_eq!(serde_json::from_str::<Telemetry>(&json).unwrap(), t);

        let unavailable = Telemetry {
            source: TelemetrySource::Unavailable {
                reason: "NVML not loaded".to_string(),
            },
            before: None,
            after: None,
        };
        let json = serde_json::to_string(&unavailable).unwrap();
        assert_eq!(
            serde_json::from_str::<Telemetry>(&json).unwrap(),
            unavailable
        );

        assert_eq!(
            serde_json::from_str::<Telemetry>("{}").unwrap(),
            Telemetry::default()
        );
        assert_eq!(
            serde_json::from_str::<GpuSample>(r#"{"sm_clock_mhz": 1980}"#).unwrap(),
            GpuSample {
                sm_clock_mhz: Some(1980),
                ..GpuSample::default()
            }
        );
        let source: TelemetrySource = serde_json::from_str(r#"{"kind": "nvml"}"#).unwrap();
        assert!(matches!(
            source,
            TelemetrySource::Nvml {
                device_index: 0,
                ..
            }
        ));
    }

    #[test]
    fn without_nvml_the_probe_says_why() {
        let probe = Probe::open("0000:01:00.0");
        let t = probe.telemetry(None, None);
        match &t.source {
            TelemetrySource::Unavailable { reason } => {
                assert!(reason.contains("NVML"), "{reason}");
                assert_eq!(probe.sample(), None);
            }
            // Only on a machine where NVML has a GPU at this address.
            TelemetrySource::Nvml { pci_bus_id, .. } => {
                assert!(same_pci_bus_id(pci_bus_id, "0000:01:00.0"));
            }
        }
        assert_eq!(t.before, None);
        assert_eq!(t.after, None);
        let _ = format!("{probe:?}");
    }

    #[test]
    fn an_adapter_without_a_bus_id_is_unavailable_not_a_panic() {
        for id in ["", "  ", "not-a-bus-id"] {
            let probe = Probe::open(id);
            assert_eq!(probe.sample(), None);
            match probe.telemetry(None, None).source {
                TelemetrySource::Unavailable { reason } => assert!(reason.contains("bus id")),
                other => panic!("{id:?} gave {other:?}"),
            }
        }
        let TelemetrySource::Unavailable { reason } = Probe::open("").telemetry(None, None).source
        else {
            unreachable!()
        };
        assert_eq!(reason, "adapter reports no PCI bus id");
    }

    #[test]
    fn probe_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Probe>();
    }
}

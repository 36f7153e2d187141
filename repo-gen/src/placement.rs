//! Where encoder instances run: `--instances N` and `--gpus auto|none|0,1,...`.
//!
//! Instances are dealt out round-robin over the listed GPUs, as
//! CLIP-as-service's `CUDA_VISIBLE_DEVICES=RR` does: 5 instances on GPUs
//! 0,1,2 become 2, 2 and 1. Each GPU that gets any becomes one
//! `instance_group` entry.
//!
//! `auto` asks NVML (libnvidia-ml, loaded at run time by `nvml-wrapper`, so
//! nothing links against it) for the GPUs and their free memory. Without
//! `--instances`, each GPU gets as many instances of each encoder as fit in
//! [`MEMORY_SHARE`] of its free memory, counting [`FOOTPRINT_FACTOR`] times
//! the weights bytes per instance, between 1 and [`MAX_AUTO_INSTANCES_PER_GPU`].
//! Without NVML or GPUs, instances run on the CPU and a note says so.
//!
//! Preprocessing models are not placed here: they always run on the CPU.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Memory an encoder instance takes, as a multiple of its weights bytes:
/// the weights, plus activations and runtime workspace for a full batch
/// (CUDA/cuDNN/TensorRT workspaces and the arena allocator).
pub const FOOTPRINT_FACTOR: u64 = 3;
/// Share of a GPU's free memory that automatic sizing plans to use.
pub const MEMORY_SHARE: f64 = 0.8;
/// More instances per GPU than this rarely raise throughput; they only queue on the same SMs.
pub const MAX_AUTO_INSTANCES_PER_GPU: u32 = 4;

/// Triton's `instance_group.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceKind {
    Cpu,
    Gpu,
}

impl InstanceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Cpu => "KIND_CPU",
            InstanceKind::Gpu => "KIND_GPU",
        }
    }
}

/// One `instance_group` entry. `gpus` empty with [`InstanceKind::Gpu`]
/// means "count instances on every GPU", Triton's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceGroup {
    pub count: u32,
    pub kind: InstanceKind,
    pub gpus: Vec<u32>,
}

#[derive(Serialize)]
pub(crate) struct GroupContext<'a> {
    count: u32,
    kind: &'static str,
    gpus: &'a [u32],
}

impl InstanceGroup {
    pub fn cpu(count: u32) -> Self {
        InstanceGroup {
            count,
            kind: InstanceKind::Cpu,
            gpus: Vec::new(),
        }
    }

    pub(crate) fn context(&self) -> GroupContext<'_> {
        GroupContext {
            count: self.count,
            kind: self.kind.as_str(),
            gpus: &self.gpus,
        }
    }
}

/// `--gpus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuChoice {
    /// Ask NVML; fall back to the CPU without it.
    Auto,
    /// CPU instances only.
    None,
    /// These GPU indices, in this order.
    List(Vec<u32>),
}

impl fmt::Display for GpuChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuChoice::Auto => f.write_str("auto"),
            GpuChoice::None => f.write_str("none"),
            GpuChoice::List(gpus) => {
                let text: Vec<String> = gpus.iter().map(u32::to_string).collect();
                f.write_str(&text.join(","))
            }
        }
    }
}

impl FromStr for GpuChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "auto" => return Ok(GpuChoice::Auto),
            "none" | "cpu" => return Ok(GpuChoice::None),
            _ => {}
        }
        let mut gpus = Vec::new();
        for part in text.split(',') {
            let index: u32 = part.trim().parse().map_err(|_| {
                format!(
                    "--gpus {text:?}: {part:?} is not a GPU index; \
                     write auto, none or indices such as 0,1,2"
                )
            })?;
            if gpus.contains(&index) {
                return Err(format!("--gpus {text:?} lists GPU {index} twice"));
            }
            gpus.push(index);
        }
        Ok(GpuChoice::List(gpus))
    }
}

/// A GPU as NVML reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// `instances` dealt out over `gpus` in turn; one group per GPU that gets any.
pub fn round_robin(instances: u32, gpus: &[u32]) -> Vec<InstanceGroup> {
    if gpus.is_empty() {
        return vec![InstanceGroup::cpu(instances)];
    }
    let n = gpus.len() as u32;
    gpus.iter()
        .enumerate()
        .map(|(i, &gpu)| InstanceGroup {
            // Instance k goes to gpus[k % n]; GPU i gets the k with k % n == i.
            count: instances / n + u32::from((i as u32) < instances % n),
            kind: InstanceKind::Gpu,
            gpus: vec![gpu],
        })
        .filter(|g| g.count > 0)
        .collect()
}

/// Instances of each encoder that fit on a GPU with `free_bytes` free, when
/// one instance of every encoder together weighs `weights_bytes`.
pub fn instances_that_fit(free_bytes: u64, weights_bytes: u64) -> u32 {
    let footprint = weights_bytes.saturating_mul(FOOTPRINT_FACTOR).max(1);
    let budget = (free_bytes as f64 * MEMORY_SHARE) as u64;
    ((budget / footprint) as u32).clamp(1, MAX_AUTO_INSTANCES_PER_GPU)
}

/// Where the encoders' instances go, and what the user should know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub groups: Vec<InstanceGroup>,
    /// Lines for stderr (fallbacks, sizing), in order.
    pub notes: Vec<String>,
}

/// Places the encoder instances. `weights_bytes` is the size of one
/// instance of every encoder together; `probe` lists the GPUs (NVML).
pub fn place(
    choice: &GpuChoice,
    instances: Option<u32>,
    weights_bytes: u64,
    probe: impl FnOnce() -> Result<Vec<GpuInfo>, String>,
) -> Result<Placement, String> {
    if instances == Some(0) {
        return Err("--instances must be at least 1".to_owned());
    }
    let mut notes = Vec::new();
    let groups = match choice {
        GpuChoice::None => vec![InstanceGroup::cpu(instances.unwrap_or(1))],
        GpuChoice::List(gpus) if gpus.is_empty() => {
            return Err("--gpus lists no GPU; write auto, none or indices such as 0,1".to_owned())
        }
        GpuChoice::List(gpus) => round_robin(instances.unwrap_or(gpus.len() as u32), gpus),
        GpuChoice::Auto => match probe() {
            Err(reason) => {
                notes.push(format!(
                    "--gpus auto: NVML is not available ({reason}); the encoders run on the CPU \
                     (KIND_CPU). Pass --gpus 0,1,... to place them on GPUs anyway"
                ));
                vec![InstanceGroup::cpu(instances.unwrap_or(1))]
            }
            Ok(gpus) if gpus.is_empty() => {
                notes.push(
                    "--gpus auto: NVML sees no GPU; the encoders run on the CPU (KIND_CPU)"
                        .to_owned(),
                );
                vec![InstanceGroup::cpu(instances.unwrap_or(1))]
            }
            Ok(gpus) => {
                let indices: Vec<u32> = gpus.iter().map(|g| g.index).collect();
                match instances {
                    Some(n) => round_robin(n, &indices),
                    None => gpus
                        .iter()
                        .map(|gpu| {
                            let count = instances_that_fit(gpu.free_bytes, weights_bytes);
                            notes.push(format!(
                                "--gpus auto: GPU {} ({}) has {} MiB free; {count} instance(s) \
                                 per encoder at {FOOTPRINT_FACTOR} x {} MiB of weights each",
                                gpu.index,
                                gpu.name,
                                gpu.free_bytes >> 20,
                                weights_bytes >> 20,
                            ));
                            InstanceGroup {
                                count,
                                kind: InstanceKind::Gpu,
                                gpus: vec![gpu.index],
                            }
                        })
                        .collect(),
                }
            }
        },
    };
    Ok(Placement { groups, notes })
}

/// The GPUs NVML sees, with their free memory. Loads libnvidia-ml at run time.
pub fn nvml_gpus() -> Result<Vec<GpuInfo>, String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| e.to_string())?;
    let count = nvml.device_count().map_err(|e| e.to_string())?;
    (0..count)
        .map(|index| {
            let device = nvml.device_by_index(index).map_err(|e| e.to_string())?;
            let memory = device.memory_info().map_err(|e| e.to_string())?;
            Ok(GpuInfo {
                index,
                name: device.name().unwrap_or_else(|_| "unknown GPU".to_owned()),
                free_bytes: memory.free,
                total_bytes: memory.total,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(groups: &[InstanceGroup]) -> Vec<(u32, Vec<u32>)> {
        groups.iter().map(|g| (g.count, g.gpus.clone())).collect()
    }

    #[test]
    fn five_instances_on_three_gpus_are_2_2_1() {
        let groups = round_robin(5, &[0, 1, 2]);
        assert_eq!(counts(&groups), [(2, vec![0]), (2, vec![1]), (1, vec![2])]);
        assert!(groups.iter().all(|g| g.kind == InstanceKind::Gpu));
    }

    #[test]
    fn round_robin_follows_the_listed_order_and_skips_idle_gpus() {
        assert_eq!(
            counts(&round_robin(2, &[3, 1, 0])),
            [(1, vec![3]), (1, vec![1])]
        );
        assert_eq!(
            counts(&round_robin(6, &[1, 0])),
            [(3, vec![1]), (3, vec![0])]
        );
        assert_eq!(counts(&round_robin(1, &[7])), [(1, vec![7])]);
        for n in 1..20 {
            for gpus in 1..6u32 {
                let list: Vec<u32> = (0..gpus).collect();
                let groups = round_robin(n, &list);
                assert_eq!(groups.iter().map(|g| g.count).sum::<u32>(), n);
                let max = groups.iter().map(|g| g.count).max().unwrap();
                let min = groups.iter().map(|g| g.count).min().unwrap();
                assert!(max - min <= 1, "{n} on {gpus}: {groups:?}");
            }
        }
    }

    #[test]
    fn gpu_choices_parse() {
        assert_eq!("auto".parse::<GpuChoice>(), Ok(GpuChoice::Auto));
        assert_eq!("none".parse::<GpuChoice>(), Ok(GpuChoice::None));
        assert_eq!(
            "0, 2,1".parse::<GpuChoice>(),
            Ok(GpuChoice::List(vec![0, 2, 1]))
        );
        assert!("0,0".parse::<GpuChoice>().unwrap_err().contains("twice"));
        assert!("gpu0"
            .parse::<GpuChoice>()
            .unwrap_err()
            .contains("not a GPU index"));
        assert!("".parse::<GpuChoice>().is_err());
    }

    #[test]
    fn without_nvml_auto_falls_back_to_the_cpu_and_says_so() {
        let placement = place(&GpuChoice::Auto, None, 1 << 20, || {
            Err("libnvidia-ml.so: cannot open shared object file".to_owned())
        })
        .unwrap();
        assert_eq!(placement.groups, [InstanceGroup::cpu(1)]);
        assert_eq!(placement.notes.len(), 1);
        assert!(
            placement.notes[0].contains("KIND_CPU"),
            "{:?}",
            placement.notes
        );
        assert!(
            placement.notes[0].contains("libnvidia-ml"),
            "{:?}",
            placement.notes
        );

        let placement = place(&GpuChoice::Auto, Some(3), 1 << 20, || Ok(Vec::new())).unwrap();
        assert_eq!(placement.groups, [InstanceGroup::cpu(3)]);
        assert!(placement.notes[0].contains("no GPU"));
    }

    #[test]
    fn real_nvml_probe_falls_back_cleanly_on_this_host() {
        // On a host without the NVIDIA driver this must be an error, not a crash.
        let placement = place(&GpuChoice::Auto, Some(2), 1 << 20, nvml_gpus).unwrap();
        let total: u32 = placement.groups.iter().map(|g| g.count).sum();
        assert_eq!(total, 2);
    }

    #[test]
    fn auto_sizes_each_gpu_from_its_free_memory() {
        let gib = 1u64 << 30;
        let gpus = vec![
            GpuInfo {
                index: 0,
                name: "big".into(),
                free_bytes: 80 * gib,
                total_bytes: 80 * gib,
            },
            GpuInfo {
                index: 1,
                name: "busy".into(),
                free_bytes: 4 * gib,
                total_bytes: 16 * gib,
            },
            GpuInfo {
                index: 2,
                name: "full".into(),
                free_bytes: 0,
                total_bytes: 16 * gib,
            },
        ];
        // 1 GiB of weights -> 3 GiB per instance; 80 GiB * 0.8 = 64 -> capped at 4;
        // 4 GiB * 0.8 = 3.2 -> 1; nothing free still gets 1.
        let placement = place(&GpuChoice::Auto, None, gib, || Ok(gpus.clone())).unwrap();
        assert_eq!(
            counts(&placement.groups),
            [(4, vec![0]), (1, vec![1]), (1, vec![2])]
        );
        assert_eq!(placement.notes.len(), 3);
        assert_eq!(instances_that_fit(16 * gib, gib), 4);
        assert_eq!(instances_that_fit(8 * gib, gib), 2);
        // --instances wins over sizing, round-robin over the GPUs found.
        let placement = place(&GpuChoice::Auto, Some(5), gib, || Ok(gpus)).unwrap();
        assert_eq!(
            counts(&placement.groups),
            [(2, vec![0]), (2, vec![1]), (1, vec![2])]
        );
    }

    #[test]
    fn explicit_lists_and_none() {
        let never = || -> Result<Vec<GpuInfo>, String> { panic!("NVML must not be asked") };
        let placement = place(&GpuChoice::List(vec![0, 1]), None, 1, never).unwrap();
        assert_eq!(counts(&placement.groups), [(1, vec![0]), (1, vec![1])]);
        let placement = place(&GpuChoice::None, Some(4), 1, never).unwrap();
        assert_eq!(placement.groups, [InstanceGroup::cpu(4)]);
        assert!(place(&GpuChoice::None, Some(0), 1, never).is_err());
        assert!(place(&GpuChoice::List(vec![]), None, 1, never).is_err());
    }
}

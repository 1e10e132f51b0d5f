//! Sizes checked before anything is allocated, host or device: every parameter tensor
//! against the device's storage-binding limit, and the whole model against the host
//! memory its initial weights (and, on the CPU path, its gradients and optimizer state)
//! take. A crafted model file or a typo like `Dense::new(1 << 40)` becomes an error
//! naming the layer, never an aborted process.

use super::Device;
use crate::layers::Node;
use crate::tensor::f32_bytes;
use anyhow::{Context, Result, bail};

/// Checks every parameter of `nodes` for `device`, with `slots` optimizer tensors per
/// trainable one.
pub(crate) fn check_params(nodes: &[Node], device: &Device, slots: usize) -> Result<()> {
    let mut total = 0u64;
    let mut trainable = 0u64;
    // The largest tensor, which the error names: (bytes, description).
    let mut largest = (0u64, String::new());
    for node in nodes {
        for p in node.params() {
            let what = || {
                format!(
                    "layer '{}' ({}): parameter '{}' of shape {:?}",
                    node.name, node.keras_type, p.suffix, p.shape
                )
            };
            let Some(bytes) = f32_bytes(&p.shape) else {
                bail!("{} has more elements than can be counted", what());
            };
            if let Device::Gpu(gpu) = device {
                gpu.check_binding(bytes, &what())
                    .context("make the layer smaller")?;
            }
            if bytes > largest.0 {
                largest = (bytes, what());
            }
            total = total
                .checked_add(bytes)
                .context("the model's size overflows")?;
            if p.trainable {
                trainable = trainable.saturating_add(bytes);
            }
        }
    }
    // The GPU path builds the initial weights on the host before uploading them; the CPU
    // path keeps weights, gradients and optimizer state there.
    let (host, what) = match device {
        Device::Gpu(_) => (total, "its initial weights"),
        Device::Cpu => (
            total.saturating_add(trainable.saturating_mul(1 + slots as u64)),
            "its weights, gradients and optimizer state on the CPU path",
        ),
    };
    if let Some(available) = host_memory_available()
        && host > available
    {
        bail!(
            "the model needs {} of host memory for {what}, more than the {} this machine has \
             available; the largest tensor is {} ({})",
            human_bytes(host),
            human_bytes(available),
            largest.1,
            human_bytes(largest.0)
        );
    }
    Ok(())
}

/// Bytes of memory the process can still take: Linux's `MemAvailable`; None where the
/// operating system does not say.
pub fn host_memory_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// 3448068464705536 → "3136.0 TiB".
pub(crate) fn human_bytes(b: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

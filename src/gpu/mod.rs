//! The GPU context: one headless wgpu device, a pipeline cache, buffer helpers and the
//! recorded-dispatch type every op returns.
//!
//! Errors from wgpu are asynchronous; every call that can fail validation runs inside an
//! error scope so that it comes back as an `anyhow::Error` with context instead of a panic
//! in the uncaptured-error handler.

mod dispatch;
mod shaders;
mod texture;

pub use dispatch::{Dispatch, Uniform, grid};
pub use shaders::{Kernel, Variant};
pub use texture::{TEXTURE_WIDTH, TextureOperand, texture_rows};

use anyhow::{Context, Result, anyhow, bail, ensure};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Counts of the expensive things, so tests can prove a training step allocates nothing
/// and submits once.
#[derive(Debug, Default)]
pub struct Counters {
    /// Buffers created through the `Gpu` (storage, uniform and staging).
    pub buffers_created: AtomicU64,
    /// Command-buffer submissions to the queue.
    pub submits: AtomicU64,
    /// Reads of GPU buffers back to the host.
    pub readbacks: AtomicU64,
}

impl Counters {
    /// (buffers created, submits, read-backs) so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.buffers_created.load(Ordering::Relaxed),
            self.submits.load(Ordering::Relaxed),
            self.readbacks.load(Ordering::Relaxed),
        )
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// How to install a software adapter when no GPU is present.
const NO_ADAPTER_HINT: &str = "no GPU adapter found. Install a GPU driver, or a software \
     Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`), then check with \
     `vulkaninfo --summary`. WGPU_BACKEND (vulkan, gl, metal, dx12) and WGPU_ADAPTER_NAME \
     select a backend and an adapter.";

/// A wgpu device with the adapter's real limits and a cache of compiled pipelines.
pub struct Gpu {
    /// The wgpu device every buffer and pipeline is created on.
    pub device: wgpu::Device,
    /// The device's queue: buffer writes and submissions.
    pub queue: wgpu::Queue,
    /// The adapter's name, backend and other details.
    pub info: wgpu::AdapterInfo,
    /// The adapter's own limits, which the device was requested with.
    pub limits: wgpu::Limits,
    /// The features the device was requested with (`SUBGROUP` where usable, else none).
    pub features: wgpu::Features,
    /// Which kernel family this adapter gets (chosen once, from its features).
    pub variant: Variant,
    /// Rows of the tallest texture a GEMM operand may use (the adapter's
    /// `max_texture_dimension_2d`); an operand needing more reads from its buffer instead.
    /// Tests lower it to reach that fallback with small shapes.
    pub max_texture_rows: u32,
    /// Dense matmuls of at most this many multiply-adds run on the small-matmul kernel
    /// ([`crate::ops::matmul::SMALL_GEMM_MACS`] by default). Tests set it to 0 to reach the
    /// GEMM cores with small shapes.
    pub small_gemm_macs: usize,
    /// Counts of buffers created, submits and read-backs (see [`Counters`]).
    pub counters: Counters,
    pipelines: Mutex<HashMap<(Kernel, Variant), Arc<wgpu::ComputePipeline>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({} / {:?})", self.info.name, self.info.backend)
    }
}

/// Every adapter the instance can see on the backends `WGPU_BACKEND` names (all when
/// unset); a value wgpu does not know is an error naming the valid ones (wgpu itself
/// would ignore it and find no adapter).
pub fn enumerate_adapters() -> Result<Vec<wgpu::Adapter>> {
    let backends = backends_from_env()?;
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    Ok(pollster::block_on(instance.enumerate_adapters(backends)))
}

/// The backends `WGPU_BACKEND` names (a comma-separated list, as wgpu reads it).
fn backends_from_env() -> Result<wgpu::Backends> {
    const NAMES: &str = "vulkan (vk), metal (mtl), dx12 (d3d12), gl (gles, opengl)";
    let Some(value) = std::env::var_os("WGPU_BACKEND").filter(|v| !v.is_empty()) else {
        return Ok(wgpu::Backends::all());
    };
    let value = value.to_string_lossy();
    for name in value.split(',').map(str::trim) {
        let known = matches!(
            name.to_lowercase().as_str(),
            "vulkan" | "vk" | "dx12" | "d3d12" | "metal" | "mtl" | "opengl" | "gles" | "gl"
        );
        ensure!(
            known,
            "WGPU_BACKEND={value}: '{name}' is not a backend; expected {NAMES}, or several \
             of them separated by commas"
        );
    }
    Ok(wgpu::Backends::from_comma_list(&value))
}

impl Gpu {
    /// Opens the adapter chosen by `WGPU_ADAPTER_NAME` (substring, case-insensitive) or the
    /// default one, with the adapter's own limits. `WGCNN_KERNELS=portable|tiled|subgroup`
    /// forces a GEMM kernel family (to test or time one the adapter would not get).
    pub fn new() -> Result<Gpu> {
        let forced = std::env::var("WGCNN_KERNELS").ok();
        let variant = match forced.as_deref() {
            None | Some("") | Some("auto") => None,
            Some("portable") => Some(Variant::Portable),
            Some("tiled") => Some(Variant::Tiled),
            Some("subgroup") => Some(Variant::Subgroup),
            Some("texture") => Some(Variant::Texture),
            Some(other) => {
                bail!("WGCNN_KERNELS={other}: expected auto, portable, tiled, subgroup or texture")
            }
        };
        Self::with_variant(variant)
    }

    /// Like [`Gpu::new`], with the kernel family given (None = choose from the adapter).
    pub fn with_variant(variant: Option<Variant>) -> Result<Gpu> {
        let adapter = pick_adapter()?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let adapter_features = adapter.features();
        let subgroups = adapter_features.contains(wgpu::Features::SUBGROUP)
            // Our subgroup kernels broadcast within groups of 8..=64 lanes.
            && info.subgroup_min_size >= 8
            && info.subgroup_max_size <= 64;
        let textures = subgroups && limits.max_texture_dimension_2d >= TEXTURE_WIDTH;
        let tiled = limits.max_compute_invocations_per_workgroup >= 256
            && limits.max_compute_workgroup_size_x >= 256
            && limits.max_compute_workgroup_storage_size >= TILED_WORKGROUP_BYTES;
        let variant = match variant {
            Some(Variant::Subgroup | Variant::SubgroupAligned | Variant::SubgroupNarrow)
                if !subgroups =>
            {
                bail!(
                    "subgroup kernels requested but adapter '{}' has no usable subgroups",
                    info.name
                )
            }
            Some(Variant::Tiled) if !tiled => bail!(
                "tiled kernels requested but adapter '{}' allows only {} invocations and {} bytes \
                 of workgroup memory per workgroup (they need 256 and {TILED_WORKGROUP_BYTES})",
                info.name,
                limits.max_compute_invocations_per_workgroup,
                limits.max_compute_workgroup_storage_size
            ),
            Some(Variant::Texture | Variant::TextureAligned | Variant::TextureAlignedB)
                if !textures =>
            {
                bail!(
                    "texture kernels requested but adapter '{}' lacks usable subgroups or \
                     {TEXTURE_WIDTH}-texel textures",
                    info.name
                )
            }
            Some(Variant::SubgroupAligned | Variant::SubgroupNarrow) => Variant::Subgroup,
            Some(Variant::TextureAligned | Variant::TextureAlignedB) => Variant::Texture,
            Some(v) => v,
            None => default_variant(info.device_type, textures, subgroups, tiled),
        };
        let features = if subgroups {
            wgpu::Features::SUBGROUP
        } else {
            wgpu::Features::empty()
        };
        let max_texture_rows = limits.max_texture_dimension_2d;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgcnn"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("requesting a device from adapter '{}'", info.name))?;
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            variant,
            max_texture_rows,
            small_gemm_macs: crate::ops::matmul::SMALL_GEMM_MACS,
            counters: Counters::default(),
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// One device per process, shared by every caller (tests run in parallel threads and
    /// would otherwise each pay device creation and shader compiles).
    pub fn shared() -> Result<Arc<Gpu>> {
        static SHARED: OnceLock<std::result::Result<Arc<Gpu>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Gpu::new().map(Arc::new).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!(e))
    }

    /// A one-line description: adapter, backend, device type, kernel family.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {}), kernels: {:?}",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info,
            self.variant
        )
    }

    /// The compiled pipeline for `kernel` in the kernel family `variant` (which matters
    /// only for GEMM kernels), compiled on first use and cached.
    pub fn pipeline(&self, kernel: Kernel, variant: Variant) -> Result<Arc<wgpu::ComputePipeline>> {
        let variant = if kernel.reads_operands() {
            variant
        } else {
            Variant::Portable
        };
        let key = (kernel, variant);
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| anyhow!("pipeline cache poisoned"))?;
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let source = kernel.source(variant);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name()),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name()),
                layout: None,
                module: &module,
                entry_point: Some(kernel.entry()),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("compiling shader '{}': {err}", kernel.name());
        }
        let pipeline = Arc::new(pipeline);
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The (kernel, family) of every pipeline created so far.
    pub fn pipelines(&self) -> Vec<(Kernel, Variant)> {
        self.pipelines
            .lock()
            .map(|c| c.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether a tensor of `len` elements fits a GEMM operand texture on this device.
    pub fn fits_texture(&self, len: usize) -> bool {
        texture_rows(len) <= u64::from(self.max_texture_rows)
    }

    /// Checks that a storage binding of `bytes` fits this device.
    pub fn check_binding(&self, bytes: u64, what: &str) -> Result<()> {
        let max = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > max {
            bail!(
                "{what} needs {bytes} bytes ({:.1} MiB) but this device binds at most {max} bytes \
                 ({:.1} MiB) per storage buffer",
                bytes as f64 / 1048576.0,
                max as f64 / 1048576.0
            );
        }
        Ok(())
    }

    /// A storage buffer of `bytes` (at least 4), checked against the limits.
    pub fn storage_buffer(&self, bytes: u64, what: &str) -> Result<wgpu::Buffer> {
        self.check_binding(bytes, what)?;
        bump(&self.counters.buffers_created);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes.max(16).next_multiple_of(16), // whole vec4s: kernels may view any tensor as array<vec4<f32>>
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("allocating {what} ({bytes} bytes): {err}");
        }
        Ok(buffer)
    }

    /// A buffer holding a kernel's `params`. Shaders read it as `var<storage, read>`, not
    /// `var<uniform>`: lavapipe inlines uniform values into loop bounds and compiles a
    /// shader variant per value set, which for some GEMM shapes recompiled on every
    /// dispatch and leaked ~10 MB each time (found by a training run hitting the OOM
    /// killer; `tests/memory.rs` guards against it).
    pub fn uniform<P: bytemuck::Pod>(&self, params: &P, what: &str) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(params);
        bump(&self.counters.buffers_created);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buffer, 0, bytes);
        buffer
    }

    /// A staging buffer for reading `bytes` back to the host.
    pub fn staging_buffer(&self, bytes: u64) -> wgpu::Buffer {
        bump(&self.counters.buffers_created);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Records `dispatches` into one compute pass of one encoder and submits it.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        Dispatch::record_all(&mut encoder, dispatches);
        bump(&self.counters.submits);
        self.queue.submit([encoder.finish()]);
        // Non-blocking maintenance: lets wgpu free what finished submissions held.
        let _ = self.device.poll(wgpu::PollType::Poll);
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("GPU submission failed validation: {err}");
        }
        Ok(())
    }

    /// Like [`Gpu::run`], then copies each `(buffer, bytes)` of `sources` one after another
    /// into `staging`, in the same submission (a data-parallel step's gradients).
    pub fn run_and_copy(
        &self,
        dispatches: &[&Dispatch],
        sources: &[(&wgpu::Buffer, u64)],
        staging: &wgpu::Buffer,
    ) -> Result<()> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        Dispatch::record_all(&mut encoder, dispatches);
        let mut at = 0;
        for &(buffer, bytes) in sources {
            encoder.copy_buffer_to_buffer(buffer, 0, staging, at, bytes);
            at += bytes;
        }
        bump(&self.counters.submits);
        self.queue.submit([encoder.finish()]);
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("GPU submission failed validation: {err}");
        }
        Ok(())
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU: {e}"))?;
        Ok(())
    }

    /// Copies `bytes` of `src` into `staging` (in its own submission), maps and returns them.
    pub fn read_bytes(
        &self,
        src: &wgpu::Buffer,
        staging: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, 0, staging, 0, bytes);
        bump(&self.counters.submits);
        bump(&self.counters.readbacks);
        self.queue.submit([encoder.finish()]);
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("read-back copy failed validation: {err}");
        }
        self.map_read(staging, bytes)
    }

    /// Maps the first `bytes` of an already-filled staging buffer and copies them out.
    pub fn map_read(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let slice = staging.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .context("map callback never ran")?
            .map_err(|e| anyhow!("mapping the staging buffer: {e}"))?;
        let out = slice
            .get_mapped_range()
            .map_err(|e| anyhow!("reading the mapped range: {e:?}"))?
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}

/// The GEMM family for an adapter of `device_type` (no run-time autotuning): tiled on a
/// real GPU, whose on-chip workgroup memory pays (docs/benchmarks.md: H100 figures); subgroup
/// broadcasts with texture operands on a CPU adapter such as lavapipe, where barriers are
/// expensive (the tiled core ran 4-5× slower) and texel fetches are vectorised where
/// buffer loads are not; portable where neither is available.
pub fn default_variant(
    device_type: wgpu::DeviceType,
    textures: bool,
    subgroups: bool,
    tiled: bool,
) -> Variant {
    match device_type {
        wgpu::DeviceType::Cpu if textures => Variant::Texture,
        wgpu::DeviceType::Cpu if subgroups => Variant::Subgroup,
        wgpu::DeviceType::Cpu => Variant::Portable,
        _ if tiled => Variant::Tiled,
        _ if subgroups => Variant::Subgroup,
        _ => Variant::Portable,
    }
}

/// Workgroup memory of the tiled GEMM core: two 256-vec4 tiles and the K range.
const TILED_WORKGROUP_BYTES: u32 = 2 * 256 * 16 + 8;

fn pick_adapter() -> Result<wgpu::Adapter> {
    let adapters = enumerate_adapters()?;
    if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
        let want = name.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&want))
            .ok_or_else(|| {
                anyhow!("WGPU_ADAPTER_NAME={name} matches none of the adapters {names:?}")
            });
    }
    // Prefer a real GPU, then anything (lavapipe reports itself as a CPU device).
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend_rank = |a: &wgpu::Adapter| match a.get_info().backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    let best = adapters
        .iter()
        .map(|a| (rank(a), backend_rank(a)))
        .min()
        .ok_or_else(|| anyhow!(NO_ADAPTER_HINT))?;
    // Of the best kind, the one for this process's local rank (one GPU per rank when a
    // machine has several; all ranks share the one there is otherwise).
    let mut best: Vec<wgpu::Adapter> = adapters
        .into_iter()
        .filter(|a| (rank(a), backend_rank(a)) == best)
        .collect();
    let pick = crate::distributed::local_rank() % best.len();
    Ok(best.swap_remove(pick))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::DeviceType::*;

    #[test]
    fn kernel_family_follows_the_adapter() {
        assert_eq!(
            default_variant(DiscreteGpu, true, true, true),
            Variant::Tiled
        );
        assert_eq!(
            default_variant(IntegratedGpu, false, false, true),
            Variant::Tiled
        );
        assert_eq!(
            default_variant(DiscreteGpu, true, true, false),
            Variant::Subgroup
        );
        assert_eq!(
            default_variant(Other, false, false, false),
            Variant::Portable
        );
        assert_eq!(default_variant(Cpu, true, true, true), Variant::Texture);
        assert_eq!(default_variant(Cpu, false, true, true), Variant::Subgroup);
        assert_eq!(default_variant(Cpu, false, false, true), Variant::Portable);
    }
}

//! A dispatch recorded once (pipeline + bind group + grid) and replayed every step.

use super::{Gpu, Kernel, TextureOperand, Variant};
use crate::tensor::Tensor;
use anyhow::{Result, bail};
use std::sync::Arc;

/// One compute dispatch, ready to record. Ops build these once per model and batch size;
/// recording is then only `set_pipeline`, `set_bind_group` and `dispatch_workgroups`.
pub struct Dispatch {
    /// The kernel this dispatch runs.
    pub kernel: Kernel,
    /// The kernel family its pipeline was compiled for (Portable for non-GEMM kernels).
    pub variant: Variant,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    /// Operand textures of a texture-family GEMM, refilled from their buffers before
    /// every run (unless `shares_textures`).
    textures: Vec<Arc<TextureOperand>>,
    /// True when the textures are another dispatch's, filled by it earlier in the step.
    shares_textures: bool,
    /// A dispatch that must follow this one (the reduction of a split-K GEMM).
    next: Option<Box<Dispatch>>,
}

/// Splits `n` workgroups over x and y so that neither exceeds `max_per_dim` (WebGPU's
/// default is 65,535). Shaders rebuild the linear index as `wid.x + wid.y * nwg.x` and
/// bounds-check it, so the few surplus groups of the last row exit at once.
pub fn grid(n: u64, max_per_dim: u32) -> Result<[u32; 3]> {
    let max = u64::from(max_per_dim);
    if n == 0 {
        return Ok([0, 1, 1]);
    }
    if n <= max {
        return Ok([n as u32, 1, 1]);
    }
    let y = n.div_ceil(max);
    if y > max {
        bail!("a dispatch of {n} workgroups exceeds {max}x{max}");
    }
    let x = n.div_ceil(y);
    Ok([x as u32, y as u32, 1])
}

impl Dispatch {
    /// Binds `params` as a uniform at binding 0 and `buffers` at bindings 1..=n, in order,
    /// and sizes the grid for `workgroups` groups.
    pub fn new<P: bytemuck::Pod>(
        gpu: &Gpu,
        kernel: Kernel,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: u64,
    ) -> Result<Dispatch> {
        let uniform = gpu.uniform(params, kernel.name());
        Self::with_uniform(gpu, kernel, &uniform, buffers, workgroups)
    }

    /// Like [`Dispatch::new`] with a uniform buffer the caller owns and rewrites between
    /// submissions (optimizer step counters, dropout seeds, the valid rows of a batch).
    pub fn with_uniform(
        gpu: &Gpu,
        kernel: Kernel,
        uniform: &wgpu::Buffer,
        buffers: &[&wgpu::Buffer],
        workgroups: u64,
    ) -> Result<Dispatch> {
        Self::build(gpu, kernel, Variant::Portable, uniform, buffers, workgroups)
    }

    /// A GEMM-kernel dispatch on the kernel family `variant` (see [`Variant`]): its two
    /// operands at bindings 1 and 2 (storage buffers, or textures for the texture
    /// family), then `buffers` from binding 3.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm<P: bytemuck::Pod>(
        gpu: &Gpu,
        kernel: Kernel,
        variant: Variant,
        params: &P,
        operands: [&Tensor; 2],
        buffers: &[&wgpu::Buffer],
        workgroups: u64,
    ) -> Result<Dispatch> {
        let uniform = gpu.uniform(params, kernel.name());
        if !variant.uses_textures() {
            let all: Vec<&wgpu::Buffer> = operands
                .iter()
                .map(|t| &t.buffer)
                .chain(buffers.iter().copied())
                .collect();
            return Self::build(gpu, kernel, variant, &uniform, &all, workgroups);
        }
        let textures = [
            Arc::new(TextureOperand::new(gpu, operands[0], kernel.name())?),
            Arc::new(TextureOperand::new(gpu, operands[1], kernel.name())?),
        ];
        Self::bind_textures(
            gpu, kernel, variant, &uniform, textures, buffers, workgroups,
        )
    }

    /// Like [`Dispatch::gemm`] for a dispatch that reads the same operands as `like`,
    /// recorded after it with nothing writing them in between: on the texture family it
    /// binds `like`'s textures instead of copying the operands again.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_like<P: bytemuck::Pod>(
        gpu: &Gpu,
        like: &Dispatch,
        kernel: Kernel,
        variant: Variant,
        params: &P,
        operands: [&Tensor; 2],
        buffers: &[&wgpu::Buffer],
        workgroups: u64,
    ) -> Result<Dispatch> {
        match like.textures.as_slice() {
            [a, b] if variant.uses_textures() => {
                let uniform = gpu.uniform(params, kernel.name());
                let textures = [a.clone(), b.clone()];
                let (u, t) = (&uniform, textures);
                let mut d = Self::bind_textures(gpu, kernel, variant, u, t, buffers, workgroups)?;
                d.shares_textures = true;
                Ok(d)
            }
            _ => Self::gemm(gpu, kernel, variant, params, operands, buffers, workgroups),
        }
    }

    fn bind_textures(
        gpu: &Gpu,
        kernel: Kernel,
        variant: Variant,
        uniform: &wgpu::Buffer,
        textures: [Arc<TextureOperand>; 2],
        buffers: &[&wgpu::Buffer],
        workgroups: u64,
    ) -> Result<Dispatch> {
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::TextureView(&textures[0].view),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: wgpu::BindingResource::TextureView(&textures[1].view),
            },
        ];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 3,
                resource: b.as_entire_binding(),
            });
        }
        let mut d = Self::bind(gpu, kernel, variant, uniform, entries, workgroups)?;
        d.textures = textures.into();
        Ok(d)
    }

    fn build(
        gpu: &Gpu,
        kernel: Kernel,
        variant: Variant,
        uniform: &wgpu::Buffer,
        buffers: &[&wgpu::Buffer],
        workgroups: u64,
    ) -> Result<Dispatch> {
        let entries = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            })
            .collect();
        Self::bind(gpu, kernel, variant, uniform, entries, workgroups)
    }

    /// Binds `uniform` at binding 0 and `entries` after it.
    fn bind<'a>(
        gpu: &Gpu,
        kernel: Kernel,
        variant: Variant,
        uniform: &'a wgpu::Buffer,
        mut entries: Vec<wgpu::BindGroupEntry<'a>>,
        workgroups: u64,
    ) -> Result<Dispatch> {
        let pipeline = gpu.pipeline(kernel, variant)?;
        let groups = grid(workgroups, gpu.limits.max_compute_workgroups_per_dimension)?;
        entries.insert(
            0,
            wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            },
        );
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name()),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("binding buffers for '{}': {err}", kernel.name());
        }
        Ok(Dispatch {
            kernel,
            variant: if kernel.reads_operands() {
                variant
            } else {
                Variant::Portable
            },
            pipeline,
            bind_group,
            groups,
            textures: Vec::new(),
            shares_textures: false,
            next: None,
        })
    }

    /// The grid this dispatch launches.
    pub fn groups(&self) -> [u32; 3] {
        self.groups
    }

    /// Appends `next` to run after this dispatch (and after anything already chained).
    pub fn then(mut self, next: Dispatch) -> Dispatch {
        let mut slot = &mut self.next;
        while let Some(d) = slot {
            slot = &mut d.next;
        }
        *slot = Some(Box::new(next));
        self
    }

    /// This dispatch and the ones chained after it, in order.
    pub fn links(&self) -> impl Iterator<Item = &Dispatch> {
        std::iter::successors(Some(self), |d| d.next.as_deref())
    }

    /// Records this dispatch alone, without its chain, into an open compute pass.
    fn record_one(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.groups[0] != 0 {
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
        }
    }

    /// Records `dispatches` and their chains, in order, into `encoder`: compute passes,
    /// ended where an operand texture must be refilled first (copies cannot sit inside a
    /// pass).
    pub fn record_all(encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
        let mut pass: Option<wgpu::ComputePass<'static>> = None;
        for d in dispatches.iter().flat_map(|d| d.links()) {
            if !d.textures.is_empty() && !d.shares_textures && d.groups[0] != 0 {
                drop(pass.take());
                for t in &d.textures {
                    t.record_copy(encoder);
                }
            }
            let p = pass.get_or_insert_with(|| {
                encoder
                    .begin_compute_pass(&Default::default())
                    .forget_lifetime()
            });
            d.record_one(p);
        }
    }

    /// Submits this dispatch alone (not its chain) and waits: for profiling.
    pub fn run_alone(&self, gpu: &Gpu) -> Result<()> {
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for t in &self.textures {
            t.record_copy(&mut encoder);
        }
        self.record_one(&mut encoder.begin_compute_pass(&Default::default()));
        gpu.counters
            .submits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        gpu.queue.submit([encoder.finish()]);
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("GPU submission failed validation: {err}");
        }
        gpu.wait()
    }
}

/// A uniform the host rewrites between submissions (a few bytes through
/// `queue.write_buffer`, staged into the next submission: no round trip).
pub struct Uniform<P> {
    /// The uniform buffer, to bind in a dispatch.
    pub buffer: wgpu::Buffer,
    _params: std::marker::PhantomData<P>,
}

impl<P: bytemuck::Pod> Uniform<P> {
    /// Creates the uniform buffer holding `params`, labelled `name`.
    pub fn new(gpu: &Gpu, params: &P, name: &str) -> Uniform<P> {
        Uniform {
            buffer: gpu.uniform(params, name),
            _params: std::marker::PhantomData,
        }
    }
    /// Rewrites the uniform with `params` (staged into the next submission).
    pub fn set(&self, gpu: &Gpu, params: &P) {
        gpu.queue
            .write_buffer(&self.buffer, 0, bytemuck::bytes_of(params));
    }
}

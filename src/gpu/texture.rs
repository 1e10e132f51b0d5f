//! GEMM operands as textures. A tensor's storage buffer is copied, row after row, into an
//! rgba32float texture [`TEXTURE_WIDTH`] texels wide (`gemm_operands_texture.wgsl` reads
//! texel t at (t % width, t / width)). The copy is recorded before the dispatch that
//! reads the texture, every time it runs, so the texture always holds what the buffer
//! holds at that point of the step; on lavapipe it is a plain memory copy.

use super::Gpu;
use crate::tensor::Tensor;
use anyhow::{Result, bail};

/// Texels per texture row; `gemm_operands_texture.wgsl` has it as `& 4095u` and `>> 12u`.
pub const TEXTURE_WIDTH: u32 = 4096;

/// One operand's texture and the copy that fills it.
pub struct TextureOperand {
    source: wgpu::Buffer,
    texture: wgpu::Texture,
    /// The view of the texture that a dispatch binds.
    pub view: wgpu::TextureView,
    texels: u32,
}

/// Texture rows allocated for `len` f32 elements: enough to hold them, and never a power
/// of two. llvmpipe keys its compiled shader variants on whether each bound texture's
/// height is a power of two, so textures of both kinds made one kernel compile twice
/// (~0.4 s each cold); one spare row keeps every GEMM operand texture the same kind.
pub fn texture_rows(len: usize) -> u64 {
    let rows = (len.div_ceil(4) as u64).div_ceil(u64::from(TEXTURE_WIDTH));
    match rows {
        0..=2 => 3,
        r if r.is_power_of_two() => r + 1,
        r => r,
    }
}

impl TextureOperand {
    /// Allocates the texture for tensor `t`'s buffer; fails when `t` needs more rows than
    /// the device allows (`what` names it in errors).
    pub fn new(gpu: &Gpu, t: &Tensor, what: &str) -> Result<TextureOperand> {
        let rows = texture_rows(t.len());
        if !gpu.fits_texture(t.len()) {
            bail!(
                "{what}: {} elements need {rows} texture rows; this device allows {}",
                t.len(),
                gpu.max_texture_rows
            );
        }
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(what),
            size: wgpu::Extent3d {
                width: TEXTURE_WIDTH,
                height: rows as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("allocating a texture for {what} ({rows} rows): {err}");
        }
        let view = texture.create_view(&Default::default());
        Ok(TextureOperand {
            source: t.buffer.clone(),
            texture,
            view,
            texels: t.len().div_ceil(4) as u32,
        })
    }

    /// Records the buffer-to-texture copy: the full rows, then the partial last one (the
    /// buffer ends there, so one copy of whole rows would read past it).
    pub fn record_copy(&self, encoder: &mut wgpu::CommandEncoder) {
        let full = self.texels / TEXTURE_WIDTH;
        let rest = self.texels % TEXTURE_WIDTH;
        let bytes_per_row = TEXTURE_WIDTH * 16;
        let copy = |encoder: &mut wgpu::CommandEncoder, row: u32, width: u32, height: u32| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.source,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: u64::from(row) * u64::from(bytes_per_row),
                        bytes_per_row: Some(bytes_per_row),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y: row, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
            );
        };
        if full > 0 {
            copy(encoder, 0, TEXTURE_WIDTH, full);
        }
        if rest > 0 {
            copy(encoder, full, rest, 1);
        }
    }
}

//! A GPU tensor: one storage buffer plus its shape. Elements are f32 unless noted
//! (labels and pooling indices use u32 buffers of the same type).

use crate::gpu::Gpu;
use anyhow::{Result, bail};

/// The element count of `shape`, or None when the product overflows `usize`.
pub fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// The bytes of an f32 tensor of `shape`, or None when that overflows `u64`.
pub fn f32_bytes(shape: &[usize]) -> Option<u64> {
    u64::try_from(checked_len(shape)?).ok()?.checked_mul(4)
}

/// A buffer on the GPU with a logical shape (row-major; NHWC for images).
pub struct Tensor {
    /// The storage buffer holding the elements.
    pub buffer: wgpu::Buffer,
    /// The logical shape (row-major; NHWC for images).
    pub shape: Vec<usize>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

impl Tensor {
    /// A zero-filled tensor (wgpu zero-initialises new buffers).
    pub fn zeros(gpu: &Gpu, shape: &[usize], name: &str) -> Result<Tensor> {
        let bytes =
            f32_bytes(shape).ok_or_else(|| anyhow::anyhow!("{name}: shape {shape:?} overflows"))?;
        let buffer = gpu.storage_buffer(bytes, name)?;
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
        })
    }

    /// A tensor holding `data` (f32 or u32), which must have `shape`'s element count.
    pub fn from_slice<T: bytemuck::Pod>(
        gpu: &Gpu,
        shape: &[usize],
        data: &[T],
        name: &str,
    ) -> Result<Tensor> {
        let t = Tensor::zeros(gpu, shape, name)?;
        t.write(gpu, data)?;
        Ok(t)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a write of `data` (staged by wgpu; lands before the next submission).
    pub fn write<T: bytemuck::Pod>(&self, gpu: &Gpu, data: &[T]) -> Result<()> {
        if std::mem::size_of::<T>() != 4 || data.len() != self.len() {
            bail!(
                "writing {} elements of {} bytes into a tensor of shape {:?} ({} elements of 4 bytes)",
                data.len(),
                std::mem::size_of::<T>(),
                self.shape,
                self.len()
            );
        }
        if !data.is_empty() {
            gpu.queue
                .write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Queues a write of `data` at element `offset` (a partial batch, say).
    pub fn write_at<T: bytemuck::Pod>(&self, gpu: &Gpu, offset: usize, data: &[T]) -> Result<()> {
        if std::mem::size_of::<T>() != 4 || offset + data.len() > self.len() {
            bail!(
                "writing {} elements at {offset} overruns a tensor of shape {:?}",
                data.len(),
                self.shape
            );
        }
        if !data.is_empty() {
            gpu.queue
                .write_buffer(&self.buffer, offset as u64 * 4, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// A second view of the same buffer with another shape of the same size (Flatten).
    pub fn alias(&self, shape: &[usize]) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        if len != self.len() {
            bail!("cannot view shape {:?} as {shape:?}", self.shape);
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
        })
    }

    /// Reads the tensor back (waits for the GPU). For tests and one-off results: training
    /// reads only its metrics, through a staging buffer it keeps.
    pub fn read<T: bytemuck::Pod>(&self, gpu: &Gpu) -> Result<Vec<T>> {
        let bytes = self.len() as u64 * 4;
        let staging = gpu.staging_buffer(bytes);
        let raw = gpu.read_bytes(&self.buffer, &staging, bytes)?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    /// Fails unless this tensor has exactly `len` elements.
    pub fn expect_len(&self, len: usize, what: &str) -> Result<()> {
        if self.len() != len {
            bail!(
                "{what}: expected {len} elements, the tensor has shape {:?} ({} elements)",
                self.shape,
                self.len()
            );
        }
        Ok(())
    }
}

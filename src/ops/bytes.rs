//! Bytes to floats on the GPU: a batch of 8-bit images travels as bytes (a quarter of its
//! floats) and a table lookup turns each into the value the host would compute, b / 255,
//! bit for bit (a division on the GPU may round differently; the table cannot).

use super::{groups_for, u32_of};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

/// The value of each byte: b / 255, as the data loaders compute it.
pub fn unit_table() -> [f32; 256] {
    std::array::from_fn(|b| f32::from(b as u8) / 255.0)
}

/// `bytes` packed four to a u32, little-endian (the layout [`bytes_to_unit`] reads);
/// the last word is zero-padded.
pub fn pack_bytes(bytes: &[u8], packed: &mut Vec<u32>) {
    packed.clear();
    packed.extend(bytes.chunks(4).map(|c| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        u32::from_le_bytes(w)
    }));
}

/// `out[i] = table[byte i of packed]` for the first `n` elements of `out`.
pub fn bytes_to_unit(
    gpu: &Gpu,
    out: &Tensor,
    packed: &Tensor,
    table: &Tensor,
    n: usize,
) -> Result<Dispatch> {
    anyhow::ensure!(
        n <= out.len() && n.div_ceil(4) <= packed.len(),
        "bytes_to_unit: {n} elements overrun out {:?} or packed {:?}",
        out.shape,
        packed.shape
    );
    table.expect_len(256, "bytes_to_unit table")?;
    let params = Params {
        n: u32_of(n, "bytes_to_unit elements")?,
        _pad: [0; 3],
    };
    Dispatch::new(
        gpu,
        Kernel::BytesToUnit,
        &params,
        &[&packed.buffer, &table.buffer, &out.buffer],
        groups_for(n, 256),
    )
}

/// CPU reference of [`bytes_to_unit`].
pub fn bytes_to_unit_cpu(out: &mut [f32], bytes: &[u8], table: &[f32; 256]) {
    out.iter_mut()
        .zip(bytes)
        .for_each(|(o, &b)| *o = table[usize::from(b)]);
}

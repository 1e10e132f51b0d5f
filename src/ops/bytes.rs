//! Bytes to floats on the GPU: a batch of 8-bit images travels as bytes (a quarter of its
//! floats) and a table lookup turns each into the value the host would compute, b / 255,
//! bit for bit (a division on the GPU may round differently; the table cannot). The same
//! kernel can read each image flipped and shifted as the host drew it for the epoch, so
//! a data source's augmentation happens in the recorded step.

use super::{groups_for, u32_of};
use crate::data::augment::{FillMode, mirror_horizontal, translate};
use crate::gpu::{Dispatch, Gpu, Kernel, Uniform};
use crate::tensor::Tensor;
use anyhow::Result;

/// The parameters of [`bytes_to_unit`]: how many values, the images' shape, and whether
/// (and with which fill) to apply each image's draw.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BytesParams {
    /// Values to write.
    pub n: u32,
    /// Image height.
    pub h: u32,
    /// Image width.
    pub w: u32,
    /// Channels.
    pub c: u32,
    /// 1: read each image through its draw; 0: as it is.
    pub augment: u32,
    /// What comes in from outside a shifted image: 0 zeros, 1 the nearest edge, 2 reflect.
    pub fill: u32,
    _pad: [u32; 2],
}

impl BytesParams {
    /// `n` values of images `[h, w, c]`, read as they are.
    pub fn new(n: usize, [h, w, c]: [usize; 3]) -> Result<BytesParams> {
        Ok(BytesParams {
            n: u32_of(n, "bytes_to_unit elements")?,
            h: u32_of(h, "image height")?,
            w: u32_of(w, "image width")?,
            c: u32_of(c, "image channels")?,
            augment: 0,
            fill: 0,
            _pad: [0; 2],
        })
    }

    /// The same, each image read through its draw with `fill` (None: no augmentation).
    pub fn with_draws(self, fill: Option<FillMode>) -> BytesParams {
        BytesParams {
            augment: u32::from(fill.is_some()),
            fill: match fill {
                None | Some(FillMode::Constant) => 0,
                Some(FillMode::Nearest) => 1,
                Some(FillMode::Reflect) => 2,
            },
            ..self
        }
    }
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

/// `out[i] = table[byte]` for the first `n` elements of `out`: byte i of `packed`, or with
/// `params.augment` the byte image `draws[image]` = (flip, dy, dx, _) moves there.
pub fn bytes_to_unit(
    gpu: &Gpu,
    out: &Tensor,
    packed: &Tensor,
    table: &Tensor,
    draws: &Tensor,
    params: &Uniform<BytesParams>,
    n: usize,
) -> Result<Dispatch> {
    anyhow::ensure!(
        n <= out.len() && n.div_ceil(4) <= packed.len(),
        "bytes_to_unit: {n} elements overrun out {:?} or packed {:?}",
        out.shape,
        packed.shape
    );
    table.expect_len(256, "bytes_to_unit table")?;
    Dispatch::with_uniform(
        gpu,
        Kernel::BytesToUnit,
        &params.buffer,
        &[&packed.buffer, &table.buffer, &draws.buffer, &out.buffer],
        groups_for(n, 256),
    )
}

/// Each image's draw (flip, dy, dx, 0), the images' shape and the fill: how
/// [`bytes_to_unit_cpu`] moves the images as the kernel does.
pub type ImageDraws<'a> = (&'a [[i32; 4]], [usize; 3], FillMode);

/// CPU reference of [`bytes_to_unit`]: each image of `bytes` moved by its draw (flip,
/// dy, dx) with the host's own flip and shift when `draws` is given, then looked up.
pub fn bytes_to_unit_cpu(
    out: &mut [f32],
    bytes: &[u8],
    table: &[f32; 256],
    draws: Option<ImageDraws>,
) {
    let Some((draws, shape, fill)) = draws else {
        out.iter_mut()
            .zip(bytes)
            .for_each(|(o, &b)| *o = table[usize::from(b)]);
        return;
    };
    let per: usize = shape.iter().product();
    let (mut flipped, mut moved) = (vec![0u8; per], vec![0u8; per]);
    for ((src, dst), d) in bytes.chunks(per).zip(out.chunks_mut(per)).zip(draws) {
        let src = if d[0] != 0 {
            mirror_horizontal(src, &mut flipped, shape);
            &flipped[..]
        } else {
            src
        };
        translate(src, &mut moved, shape, (d[1] as isize, d[2] as isize), fill);
        dst.iter_mut()
            .zip(&moved)
            .for_each(|(o, &b)| *o = table[usize::from(b)]);
    }
}

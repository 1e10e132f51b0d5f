//! Training-time augmentation of (height, width, channels) images, drawn from the model's
//! seed: Keras' `RandomFlip("horizontal")` and `RandomTranslation`. Each kind draws from a
//! stream of its own, seeded by (seed, epoch), so turning one on changes neither the
//! shuffle order nor the other's draws, and epoch e of a resumed run draws what epoch e of
//! an uninterrupted one drew.

use anyhow::{Result, bail, ensure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How pixels shifted in from outside the image are filled (Keras' `fill_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FillMode {
    /// Mirror about the edge: d c b a | a b c d | d c b a (Keras' default).
    #[default]
    Reflect,
    /// Zeros (Keras' "constant" with fill_value 0).
    Constant,
    /// Repeat the edge pixel.
    Nearest,
}

/// Keras' `RandomTranslation(height_factor, width_factor, fill_mode="reflect")`: each
/// training image moves by a whole number of pixels drawn uniformly from
/// `[-factor·size, factor·size]` on each axis (pad-and-crop; Keras' bilinear interpolation
/// of fractional shifts is not applied).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomTranslation {
    /// The largest vertical shift, as a fraction of the image height (in [0, 1]).
    pub height_factor: f32,
    /// The largest horizontal shift, as a fraction of the image width (in [0, 1]).
    pub width_factor: f32,
    /// How pixels shifted in from outside are filled (Keras' default `Reflect`).
    pub fill_mode: FillMode,
}

impl RandomTranslation {
    /// Shifts of up to `height_factor` and `width_factor`, reflect fill (Keras' default).
    pub fn new(height_factor: f32, width_factor: f32) -> RandomTranslation {
        RandomTranslation {
            height_factor,
            width_factor,
            fill_mode: FillMode::Reflect,
        }
    }
    /// Sets `fill_mode`.
    pub fn fill_mode(mut self, m: FillMode) -> Self {
        self.fill_mode = m;
        self
    }
}

/// Writes `src`, an (h, w, c) image, mirrored left-right into `dst` (as far as both reach).
pub fn mirror_horizontal<T: Copy>(src: &[T], dst: &mut [T], [h, w, c]: [usize; 3]) {
    let row = w * c;
    if row == 0 {
        return; // nothing to mirror (and chunks of 0 would panic)
    }
    for (s, d) in src.chunks_exact(row).zip(dst.chunks_exact_mut(row)).take(h) {
        for (sp, dp) in s.chunks_exact(c).zip(d.chunks_exact_mut(c).rev()) {
            dp.copy_from_slice(sp);
        }
    }
}

/// The source index along an axis of `n` for output `i` shifted by `d`, or None where the
/// fill is zero.
fn source(i: usize, d: isize, n: usize, fill: FillMode) -> Option<usize> {
    let s = i as isize - d;
    if (0..n as isize).contains(&s) {
        return Some(s as usize);
    }
    match fill {
        FillMode::Constant => None,
        FillMode::Nearest => Some(s.clamp(0, n as isize - 1) as usize),
        FillMode::Reflect => {
            // Period 2n: s mirrored about the edges, as Keras' "reflect" (edge repeated).
            let p = 2 * n as isize;
            let m = s.rem_euclid(p);
            Some(if m < n as isize { m } else { p - 1 - m } as usize)
        }
    }
}

/// Writes `src`, an (h, w, c) image, moved down by `dy` and right by `dx` pixels into
/// `dst`, filling what comes in from outside with `fill`.
pub fn translate<T: Copy + Default>(
    src: &[T],
    dst: &mut [T],
    [h, w, c]: [usize; 3],
    (dy, dx): (isize, isize),
    fill: FillMode,
) {
    for y in 0..h {
        let sy = source(y, dy, h, fill);
        for x in 0..w {
            let o = (y * w + x) * c;
            match (sy, source(x, dx, w, fill)) {
                (Some(sy), Some(sx)) => {
                    let i = (sy * w + sx) * c;
                    dst[o..o + c].copy_from_slice(&src[i..i + c]);
                }
                _ => dst[o..o + c].fill(T::default()),
            }
        }
    }
}

/// What one epoch applies to its training images.
pub(crate) struct Augment {
    shape: [usize; 3],
    flip: Option<ChaCha8Rng>,
    translation: Option<(RandomTranslation, ChaCha8Rng)>,
}

impl Augment {
    /// The augmentation of `epoch` (0-based) for images of `input` shape, or None when the
    /// fit asks for none. A non-(h, w, c) input with augmentation is an error.
    pub fn for_epoch(
        seed: u64,
        epoch: usize,
        input: &[usize],
        horizontal_flip: bool,
        translation: Option<RandomTranslation>,
    ) -> Result<Option<Augment>> {
        if !horizontal_flip && translation.is_none() {
            return Ok(None);
        }
        let &[h, w, c] = input else {
            bail!(
                "horizontal_flip and translation need (height, width, channels) inputs; the model's input shape is {input:?}"
            );
        };
        if let Some(t) = translation {
            ensure!(
                (0.0..=1.0).contains(&t.height_factor) && (0.0..=1.0).contains(&t.width_factor),
                "translation factors {} and {} must be in [0, 1]",
                t.height_factor,
                t.width_factor
            );
        }
        let e = epoch as u64 + 1;
        let flip = horizontal_flip
            .then(|| ChaCha8Rng::seed_from_u64(!seed ^ e.wrapping_mul(0xD1B5_4A32_D192_ED03)));
        let translation = translation.map(|t| {
            let rng = ChaCha8Rng::seed_from_u64(
                seed.rotate_left(17) ^ e.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7),
            );
            (t, rng)
        });
        Ok(Some(Augment {
            shape: [h, w, c],
            flip,
            translation,
        }))
    }

    /// The (height, width, channels) of the images.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// What the next image of the epoch gets. Drawn in the epoch's order, whoever then
    /// applies it (the training loop, a loader's worker, another rank).
    pub fn next_draw(&mut self) -> Draw {
        let [h, w, _] = self.shape;
        let flip = self.flip.as_mut().is_some_and(|r| r.random::<bool>());
        let shift = self.translation.as_mut().map(|(t, r)| {
            let max_y = (t.height_factor * h as f32).floor() as i64;
            let max_x = (t.width_factor * w as f32).floor() as i64;
            let dy = r.random_range(-max_y..=max_y) as isize;
            let dx = r.random_range(-max_x..=max_x) as isize;
            (dy, dx, t.fill_mode)
        });
        Draw { flip, shift }
    }
}

/// One image's flip and shift (rows, columns, fill).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Draw {
    flip: bool,
    shift: Option<(isize, isize, FillMode)>,
}

impl Draw {
    /// (flip, dy, dx, 0) as the GPU reads it (`bytes_to_unit.wgsl`), and its shift's fill.
    pub fn words(&self) -> ([i32; 4], Option<FillMode>) {
        let (dy, dx, fill) = match self.shift {
            Some((dy, dx, fill)) => (dy as i32, dx as i32, Some(fill)),
            None => (0, 0, None),
        };
        ([i32::from(self.flip), dy, dx, 0], fill)
    }

    /// [`Draw::apply`] to `data` itself, through `copy` (and `scratch`), both reused
    /// between calls: a sample's target image or mask moved with its input.
    pub fn apply_in_place<T: Copy + Default>(
        &self,
        data: &mut [T],
        shape: [usize; 3],
        copy: &mut Vec<T>,
        scratch: &mut Vec<T>,
    ) {
        copy.clear();
        copy.extend_from_slice(data);
        self.apply(copy, data, shape, scratch);
    }

    /// Writes `src`, an image of `shape` (floats or bytes: only pixels move, and what
    /// comes in is 0 or a copy), flipped and shifted into `dst` (`scratch` is grown to an
    /// image when both apply).
    pub fn apply<T: Copy + Default>(
        &self,
        src: &[T],
        dst: &mut [T],
        shape: [usize; 3],
        scratch: &mut Vec<T>,
    ) {
        match (self.flip, self.shift) {
            (false, None) => dst.copy_from_slice(src),
            (true, None) => mirror_horizontal(src, dst, shape),
            (false, Some((dy, dx, fill))) => translate(src, dst, shape, (dy, dx), fill),
            (true, Some((dy, dx, fill))) => {
                scratch.resize(src.len(), T::default());
                mirror_horizontal(src, scratch, shape);
                translate(scratch, dst, shape, (dy, dx), fill);
            }
        }
    }
}

//! Dense matmul `C = op(A)·op(B) (+ bias) (relu) (+ C)`: the forward pass of Dense
//! (`A·B + b`) and its gradients (`dX = dY·Wᵀ`, `dW = Xᵀ·dY`), on the shared GEMM core.

use super::transpose::transpose;
use super::u32_of;
use crate::gpu::{Dispatch, Gpu, Kernel, Variant};
use crate::tensor::Tensor;
use anyhow::{Result, ensure};

/// Shape and options of one matmul. `a` is `[m, k]` (or `[k, m]` if `trans_a`), `b` is
/// `[k, n]` (or `[n, k]` if `trans_b`), `c` is `[m, n]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatmulShape {
    /// Rows of `c` (and of op(A)).
    pub m: usize,
    /// Columns of `c` (and of op(B)).
    pub n: usize,
    /// The reduced dimension: columns of op(A), rows of op(B).
    pub k: usize,
    /// Whether `a` is stored transposed, `[k, m]`.
    pub trans_a: bool,
    /// Whether `b` is stored transposed, `[n, k]`.
    pub trans_b: bool,
    /// Whether to add `bias[n]` to every row.
    pub bias: bool,
    /// Whether to apply relu after the bias (before any accumulation).
    pub relu: bool,
    /// Whether to add the result to `c` instead of overwriting it.
    pub accumulate: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    k_chunk: u32,
    _pad: [u32; 3],
}

/// matmul's flag bits (shared with split_k_reduce).
const BIAS: u32 = 4;
const RELU: u32 = 8;
const ACCUMULATE: u32 = 16;
const SPLIT: u32 = 32;
const TRANSPOSED_C: u32 = 64;
const B_TRANSPOSED: u32 = 128;

impl MatmulShape {
    fn flags(&self) -> u32 {
        u32::from(self.trans_a)
            | u32::from(self.trans_b) << 1
            | u32::from(self.bias) << 2
            | u32::from(self.relu) << 3
            | u32::from(self.accumulate) << 4
    }

    /// Multiply-adds × 2.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// The kernel family for a GEMM: the device's, with aligned loaders where the shape
/// allows (`a_aligned`: A's vec4 axis and K are multiples of 4; `b_aligned`: B's vec4 axis
/// is), reading storage buffers instead of textures when an operand is past the device's
/// texture size.
pub(crate) fn gemm_variant(
    gpu: &Gpu,
    a_aligned: bool,
    b_aligned: bool,
    operands: [&Tensor; 2],
) -> Variant {
    let v = match gpu.variant {
        Variant::Subgroup if a_aligned && b_aligned => Variant::SubgroupAligned,
        Variant::Texture if a_aligned && b_aligned => Variant::TextureAligned,
        Variant::Texture if b_aligned => Variant::TextureAlignedB,
        other => other,
    };
    fitting(gpu, v, operands)
}

/// `v`, or its storage-buffer form when an operand does not fit a texture.
fn fitting(gpu: &Gpu, v: Variant, operands: [&Tensor; 2]) -> Variant {
    if v.uses_textures() && !operands.iter().all(|t| gpu.fits_texture(t.len())) {
        v.with_buffers()
    } else {
        v
    }
}

/// Workgroups for a GEMM of `m × n` by `kernel` on kernel family `variant`.
pub(crate) fn gemm_groups(kernel: Kernel, variant: Variant, m: usize, n: usize) -> u64 {
    let (tm, tn) = kernel.gemm_tile(variant);
    (m.div_ceil(tm as usize) * n.div_ceil(tn as usize)) as u64
}

/// How to split K so that a GEMM with few output tiles still fills the device:
/// (number of splits, K per split — a multiple of 4, as the cores step K by 4).
pub(crate) fn split_k_plan(
    gpu: &Gpu,
    kernel: Kernel,
    variant: Variant,
    m: usize,
    n: usize,
    k: usize,
) -> (usize, usize) {
    // Enough workgroups for a fair share of a GPU, or four per core of a CPU adapter
    // (lavapipe runs a workgroup as one SIMD batch per thread; more, shorter K chunks only
    // add per-tile epilogues and partial sums); never chunks under 64 so that the
    // reduction stays cheap.
    let target = match gpu.info.device_type {
        wgpu::DeviceType::Cpu => {
            4 * std::thread::available_parallelism().map_or(4, std::num::NonZero::get)
        }
        _ => 128,
    };
    let tiles = gemm_groups(kernel, variant, m, n) as usize;
    let splits = target.div_ceil(tiles).min(k / 64).max(1);
    let chunk = k.div_ceil(splits).next_multiple_of(4).max(4);
    (k.div_ceil(chunk).max(1), chunk)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    m: u32,
    n: u32,
    splits: u32,
    flags: u32,
}

/// The reduction finishing a split-K GEMM into `out` ([m, n]) with matmul's epilogue
/// `flags` (bias, relu, accumulate).
pub(crate) fn split_k_reduce(
    gpu: &Gpu,
    out: &Tensor,
    partial: &Tensor,
    bias: Option<&Tensor>,
    (m, n, splits): (usize, usize, usize),
    flags: u32,
) -> Result<Dispatch> {
    let params = ReduceParams {
        m: m as u32,
        n: n as u32,
        splits: splits as u32,
        flags: flags & (BIAS | RELU | ACCUMULATE | TRANSPOSED_C),
    };
    let bias_buf = bias.map(|t| &t.buffer).unwrap_or(&partial.buffer);
    Dispatch::new(
        gpu,
        Kernel::SplitKReduce,
        &params,
        &[&partial.buffer, bias_buf, &out.buffer],
        (m * n).div_ceil(256) as u64,
    )
}

/// Matmuls of at most this many multiply-adds (a classifier head: 128 × 64 × 10 is 81,920)
/// run on `matmul_small.wgsl`, one invocation per output. At this size the GEMM cores'
/// tiles are mostly empty and their speed does not show, while their three forms for a
/// dense layer's forward pass and gradients cost 0.5 s (Mesa 22.3) to 1.0 s (Mesa 25.0)
/// of compiling at the first step on lavapipe against ~0.05 s for this one kernel.
pub const SMALL_GEMM_MACS: usize = 1 << 17;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SmallParams {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
}

/// `c = op(a)·op(b) (+ bias) (relu) (+ c)`. `bias` must be given iff `shape.bias`.
pub fn matmul(
    gpu: &Gpu,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    shape: &MatmulShape,
) -> Result<Dispatch> {
    let s = shape;
    a.expect_len(s.m * s.k, "matmul A")?;
    b.expect_len(s.k * s.n, "matmul B")?;
    c.expect_len(s.m * s.n, "matmul C")?;
    ensure!(
        s.bias == bias.is_some(),
        "matmul: bias flag and bias tensor disagree"
    );
    if let Some(bias) = bias {
        bias.expect_len(s.n, "matmul bias")?;
    }
    if s.m.saturating_mul(s.n).saturating_mul(s.k) <= gpu.small_gemm_macs {
        return matmul_small(gpu, c, a, b, bias, s);
    }
    if narrow(gpu, s) {
        return matmul_narrow(gpu, c, a, b, bias, s);
    }
    // The kernel reads row-major operands only. Either transpose Aᵀ / Bᵀ into scratch,
    // or compute Cᵀ = op(B)ᵀ·op(A)ᵀ with a transposed store — a stored-transposed operand
    // is then already row-major. Pick whichever moves fewer elements: a transposed store
    // scatters every output, which costs about as much as transposing it (measured on
    // lavapipe: dY·Wᵀ at 32×43264×10 took twice as long swapped).
    let direct_cost = usize::from(s.trans_a) * s.m * s.k + usize::from(s.trans_b) * s.k * s.n;
    let swapped_cost =
        usize::from(!s.trans_b) * s.k * s.n + usize::from(!s.trans_a) * s.m * s.k + s.m * s.n;
    let swap = !s.bias && swapped_cost < direct_cost;
    // (rows, cols) of the GEMM the kernel runs, and its operands' needed transposes.
    let (gm, gn) = if swap { (s.n, s.m) } else { (s.m, s.n) };
    let mut pre = Vec::new();
    let mut row_major = |t: &Tensor,
                         rows: usize,
                         cols: usize,
                         stored_transposed: bool,
                         what: &str|
     -> Result<Option<Tensor>> {
        if !stored_transposed {
            return Ok(None);
        }
        // `t` holds the [cols, rows] matrix; make it [rows, cols].
        let out = Tensor::zeros(gpu, &[rows, cols], what)?;
        pre.push(transpose(gpu, &out, t, 1, cols, rows)?);
        Ok(Some(out))
    };
    let (a_src, b_src) = if swap { (b, a) } else { (a, b) };
    // Operand 1 is [gm, k]: A itself (direct) or op(B)ᵀ (swapped, stored transposed iff !trans_b).
    let a_t = row_major(
        a_src,
        gm,
        s.k,
        if swap { !s.trans_b } else { s.trans_a },
        "matmul operand, transposed",
    )?;
    // Operand 2 is [k, gn]: B itself (direct) or op(A)ᵀ (swapped, stored transposed iff !trans_a).
    let b_t = row_major(
        b_src,
        s.k,
        gn,
        if swap { !s.trans_a } else { s.trans_b },
        "matmul operand, transposed",
    )?;
    let (a, b) = (a_t.as_ref().unwrap_or(a_src), b_t.as_ref().unwrap_or(b_src));
    let s = &MatmulShape { m: gm, n: gn, ..*s };
    let variant = gemm_variant(gpu, s.k.is_multiple_of(4), s.n.is_multiple_of(4), [a, b]);
    let flags = s.flags() & (BIAS | RELU | ACCUMULATE) | if swap { TRANSPOSED_C } else { 0 };
    gemm(gpu, (c, a, b, bias), s, variant, flags, pre)
}

/// `c = op(a)·op(b) …` on `matmul_small.wgsl`, operands read in place.
fn matmul_small(
    gpu: &Gpu,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    s: &MatmulShape,
) -> Result<Dispatch> {
    let params = SmallParams {
        m: u32_of(s.m, "m")?,
        n: u32_of(s.n, "n")?,
        k: u32_of(s.k, "k")?,
        flags: s.flags(),
    };
    // As in gemm(): B stands in for a missing bias.
    let bias_buf = bias.map(|t| &t.buffer).unwrap_or(&b.buffer);
    Dispatch::new(
        gpu,
        Kernel::MatmulSmall,
        &params,
        &[&a.buffer, &b.buffer, bias_buf, &c.buffer],
        (s.m * s.n).div_ceil(64) as u64,
    )
}

/// True when the narrow-output core applies: a subgroup device, N ≤ 16 (a classifier
/// layer), K a multiple of 4 and A row-major (its transpose would cost more than it saves).
fn narrow(gpu: &Gpu, s: &MatmulShape) -> bool {
    matches!(gpu.variant, Variant::Subgroup | Variant::Texture)
        && s.n <= 16
        && s.k.is_multiple_of(4)
        && !s.trans_a
}

/// `c = a·op(b)` on the narrow-output core, which reads B in place, stored transposed or
/// not.
fn matmul_narrow(
    gpu: &Gpu,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    s: &MatmulShape,
) -> Result<Dispatch> {
    let flags = s.flags() & (BIAS | RELU | ACCUMULATE) | if s.trans_b { B_TRANSPOSED } else { 0 };
    // Storage buffers even on the texture family: this core reads each element of the
    // (large) operands about once, so copying them into textures cost more than it saved
    // (mnist-conv's dense layer: 2.4 ms with textures, 1.4 ms without, Mesa 25).
    gemm(
        gpu,
        (c, a, b, bias),
        s,
        Variant::SubgroupNarrow,
        flags,
        Vec::new(),
    )
}

/// Records the GEMM (split over K when it has few tiles) after the `pre` dispatches.
fn gemm(
    gpu: &Gpu,
    (c, a, b, bias): (&Tensor, &Tensor, &Tensor, Option<&Tensor>),
    s: &MatmulShape,
    variant: Variant,
    flags: u32,
    pre: Vec<Dispatch>,
) -> Result<Dispatch> {
    let kernel = Kernel::Matmul;
    let (splits, chunk) = split_k_plan(gpu, kernel, variant, s.m, s.n, s.k);
    let mut params = Params {
        m: u32_of(s.m, "m")?,
        n: u32_of(s.n, "n")?,
        k: u32_of(s.k, "k")?,
        flags,
        k_chunk: u32_of(chunk, "k")?,
        _pad: [0; 3],
    };
    // Without a bias the binding still needs a buffer. B is already bound read-only; C is
    // not an option (read-only and read-write views of one buffer may not share a dispatch).
    let bias_buf = bias.map(|t| &t.buffer).unwrap_or(&b.buffer);
    let groups = gemm_groups(kernel, variant, s.m, s.n) * splits as u64;
    let gemm = if splits == 1 {
        let bufs = [bias_buf, &c.buffer];
        Dispatch::gemm(gpu, kernel, variant, &params, [a, b], &bufs, groups)?
    } else {
        let partial = Tensor::zeros(gpu, &[splits, s.m, s.n], "split-K partial sums")?;
        // Partials are [splits, gm, gn]; the reduction adds the bias, relu, accumulation
        // and transposed store.
        params.flags = SPLIT | flags & B_TRANSPOSED;
        let bufs = [bias_buf, &partial.buffer];
        let gemm = Dispatch::gemm(gpu, kernel, variant, &params, [a, b], &bufs, groups)?;
        gemm.then(split_k_reduce(
            gpu,
            c,
            &partial,
            bias,
            (s.m, s.n, splits),
            flags,
        )?)
    };
    Ok(match pre.into_iter().reduce(Dispatch::then) {
        Some(first) => first.then(gemm),
        None => gemm,
    })
}

/// CPU reference of [`matmul`] (f64 accumulation); overwrites or accumulates like the GPU.
pub fn matmul_cpu(c: &mut [f32], a: &[f32], b: &[f32], bias: Option<&[f32]>, s: &MatmulShape) {
    for i in 0..s.m {
        for j in 0..s.n {
            let mut acc = 0f64;
            for p in 0..s.k {
                let av = if s.trans_a {
                    a[p * s.m + i]
                } else {
                    a[i * s.k + p]
                };
                let bv = if s.trans_b {
                    b[j * s.k + p]
                } else {
                    b[p * s.n + j]
                };
                acc += f64::from(av) * f64::from(bv);
            }
            let mut v = acc as f32;
            if let Some(bias) = bias {
                v += bias[j];
            }
            if s.relu {
                v = v.max(0.0);
            }
            if s.accumulate {
                c[i * s.n + j] += v;
            } else {
                c[i * s.n + j] = v;
            }
        }
    }
}

/// Dense forward on the CPU: `out[b, o] = Σ inp[b, i]·w[i, o] + bias[o]`.
pub fn dense_forward_cpu(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    batch: usize,
    n_in: usize,
    n_out: usize,
) {
    let s = MatmulShape {
        m: batch,
        n: n_out,
        k: n_in,
        bias: true,
        ..Default::default()
    };
    matmul_cpu(out, inp, weight, Some(bias), &s);
}

/// Dense backward on the CPU, accumulating: `dinp += dout·Wᵀ`, `dweight += inpᵀ·dout`,
/// `dbias += Σ_b dout`.
#[allow(clippy::too_many_arguments)]
pub fn dense_backward_cpu(
    dinp: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    batch: usize,
    n_in: usize,
    n_out: usize,
) {
    if let Some(dinp) = dinp {
        let s = MatmulShape {
            m: batch,
            n: n_in,
            k: n_out,
            trans_b: true,
            accumulate: true,
            ..Default::default()
        };
        matmul_cpu(dinp, dout, weight, None, &s);
    }
    let s = MatmulShape {
        m: n_in,
        n: n_out,
        k: batch,
        trans_a: true,
        accumulate: true,
        ..Default::default()
    };
    matmul_cpu(dweight, inp, dout, None, &s);
    super::bias::bias_backward_cpu(dbias, dout, batch, n_out);
}

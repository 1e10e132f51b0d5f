// conv2d backward w.r.t. the weights for layers whose input channels are not a multiple
// of 4 (the first layer: 1 or 3 channels), as the GEMM im2col(x)ᵀ · dout:
// dw[tap, co] = Σ_{n, oh, ow} x[n, oh·s+kh−pt, ow·s+kw−pl, ci] · dout[n, oh, ow, co]
// with M = taps (kh, kw, ci), N = CO, K = B·OH·OW. conv2d_backward_weight.wgsl puts CO on
// the rows so that im2col loads vec4 along the channels; with 1 or 3 channels there is no
// such vec4, and this layout instead reads dout as aligned vec4 along CO and writes dw in
// its HWIO layout directly. Operands (gemm_operands_*.wgsl): input1 = x, input2 = dout.

@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.k_h * p.k_w * p.in_c, p.out_c, p.batch * p.out_h * p.out_w);
}

// A[m = tap, k .. k+4 = output pixels], zero in the padding (pixels past the batch are
// left to the caller).
fn x_col4(m: u32, k: u32) -> vec4<f32> {
    let len = input1_len();
    let t = tap_of(m, p.in_c);
    let o0 = pixel_of(k, p.out_h, p.out_w);
    let o1 = next_pixel(o0, p.out_h, p.out_w);
    let o2 = next_pixel(o1, p.out_h, p.out_w);
    let o3 = next_pixel(o2, p.out_h, p.out_w);
    return vec4<f32>(x_elem(x_index(len, o0, t)), x_elem(x_index(len, o1, t)), x_elem(x_index(len, o2, t)), x_elem(x_index(len, o3, t)));
}

// General loader: zero past the last pixel.
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), x_col4(m, k), below4(k, p.batch * p.out_h * p.out_w));
}

fn dout_at(k: u32, n: u32) -> f32 {
    if (k >= p.batch * p.out_h * p.out_w || n >= p.out_c) {
        return 0.0;
    }
    let i = k * p.out_c + n;
    return input2_elem(i);
}

// B[k = output pixel, n = co]; general loader (portable and tiled cores).
fn load_b4(k: u32, n: u32) -> vec4<f32> {
    return vec4<f32>(dout_at(k, n), dout_at(k, n + 1u), dout_at(k, n + 2u), dout_at(k, n + 3u));
}

// Unaligned loaders (subgroup cores): one path each, no branch.
fn load_a4_unaligned(m: u32, k: u32) -> vec4<f32> {
    return load_a4(m, k);
}

fn load_b4_unaligned(k: u32, n: u32) -> vec4<f32> {
    let i = k * p.out_c + n;
    let v = blend4(input2_texel(i >> 2u), input2_texel((i >> 2u) + 1u), i & 3u);
    return select(vec4<f32>(0.0), v, below4(n, p.out_c) & vec4<bool>(k < p.batch * p.out_h * p.out_w));
}

// Aligned loaders (subgroup cores): K = B·OH·OW % 4 == 0 and CO % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    return x_col4(m, k);
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    return input2_texel((k * p.out_c + min(n, p.out_c - 4u)) >> 2u);
}

// For the texture core's AlignedB form (CO % 4 == 0, K = B·OH·OW not): aligned along N,
// pixels past K zero.
fn load_b4_aligned_k(k: u32, n: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), load_b4_aligned(k, n), k < p.batch * p.out_h * p.out_w);
}

// (m, n) = (tap, co) is dw[tap, co], the HWIO layout; with split-K (flag 4) at
// [split, tap, co] of the partial-sum buffer, which split_k_reduce finishes. One store
// statement for both: every store in the code is a per-lane loop on lavapipe.
fn store(m: u32, n: u32, v: f32) {
    let taps = p.k_h * p.k_w * p.in_c;
    let split = select(0u, split_index, (p.flags & 4u) != 0u);
    let i = (split * taps + m) * p.out_c + n;
    if (i >= arrayLength(&dw)) {
        return;
    }
    var r = v;
    if ((p.flags & 2u) != 0u) {
        r += dw[i];
    }
    dw[i] = r;
}

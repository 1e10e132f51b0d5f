// conv2d backward w.r.t. the weights, computed transposed:
// dw[kh, kw, ci, co] = Σ_{n, oh, ow} dout[n, oh, ow, co] · x[n, oh·s+kh−pt, ow·s+kw−pl, ci]
// as the GEMM doutᵀ · im2col(x): M = CO, N = KH·KW·CI, K = B·OH·OW. This way the operand
// that needs the im2col index maths (B) is read as vec4 along its contiguous channels,
// and A needs none; K is long, so the launcher splits it over workgroups.
// Operands (gemm_operands_*.wgsl): input1 = x (NHWC), input2 = dout.

@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.out_c, p.k_h * p.k_w * p.in_c, p.batch * p.out_h * p.out_w);
}

fn dout_at(k: u32, m: u32) -> f32 {
    if (k >= p.batch * p.out_h * p.out_w) {
        return 0.0;
    }
    let i = k * p.out_c + m;
    return input2_elem(i);
}

// A[m = co, k = output pixel]: four pixels are out_c apart, never one vec4.
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(dout_at(k, m), dout_at(k + 1u, m), dout_at(k + 2u, m), dout_at(k + 3u, m));
}

// B[k = output pixel, n = tap (kh, kw, ci)]: in_c % 4 == 0 (the launcher pads other
// channel counts), so the four taps n .. n+3 are four channels of one pixel: one texel.
fn load_b4(k: u32, n: u32) -> vec4<f32> {
    return load_b4_unaligned(k, n);
}

// Unaligned loaders (subgroup cores): "unaligned" is K = B·OH·OW % 4 != 0 here, and pixels
// past K load as zero.
fn load_a4_unaligned(m: u32, k: u32) -> vec4<f32> {
    return load_a4(m, k);
}

fn load_b4_unaligned(k: u32, n: u32) -> vec4<f32> {
    let t = im2col(input1_len(), k, n);
    let ok = t.y != 0u && k < p.batch * p.out_h * p.out_w;
    return select(vec4<f32>(0.0), input1_texel(t.x >> 2u), ok);
}

// Aligned loaders (subgroup cores): in_c % 4 == 0 and K % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    let c = p.out_c;
    let i = k * c + m;
    return vec4<f32>(
        input2_elem(i),
        input2_elem((i + c)),
        input2_elem((i + 2u * c)),
        input2_elem((i + 3u * c)),
    );
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    let t = im2col(input1_len(), k, min(n, p.k_h * p.k_w * p.in_c - 4u));
    return select(vec4<f32>(0.0), input1_texel(t.x >> 2u), t.y != 0u);
}

// For the texture core's AlignedB form: B is always aligned here (in_c % 4 == 0), so this
// is the unaligned loader, which zeroes pixels past K.
fn load_b4_aligned_k(k: u32, n: u32) -> vec4<f32> {
    return load_b4_unaligned(k, n);
}

// (m, n) = (co, tap) lands at dw[tap, co], the HWIO layout; with split-K (flag 4) at
// [split, tap, co] of the partial-sum buffer, which split_k_reduce finishes. One store
// statement for both: every store in the code is a per-lane loop on lavapipe. A gradient
// added to what dw holds goes through split_k_reduce too (conv2d.rs): reading dw here
// cost ~100 ms of this kernel's compile on Mesa 25.0.
fn store(m: u32, n: u32, v: f32) {
    let taps = p.k_h * p.k_w * p.in_c;
    let split = select(0u, split_index, (p.flags & 4u) != 0u);
    let i = (split * taps + n) * p.out_c + m;
    if (i >= arrayLength(&dw)) {
        return;
    }
    dw[i] = v;
}

// Columns n .. n+4 of row m (the subgroup and texture cores): four taps of one filter,
// out_c apart in dw.
fn store4(m: u32, n: u32, v: vec4<f32>) {
    store(m, n, v.x);
    store(m, n + 1u, v.y);
    store(m, n + 2u, v.z);
    store(m, n + 3u, v.w);
}

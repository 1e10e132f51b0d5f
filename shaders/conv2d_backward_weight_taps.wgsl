// conv2d backward w.r.t. the weights for layers whose input channels are not a multiple
// of 4 (the first layer: 1 or 3 channels), as the GEMM im2col(x)ᵀ · dout:
// dw[tap, co] = Σ_{n, oh, ow} x[n, oh·s+kh−pt, ow·s+kw−pl, ci] · dout[n, oh, ow, co]
// with M = taps (kh, kw, ci), N = CO, K = B·OH·OW. conv2d_backward_weight.wgsl puts CO on
// the rows so that im2col loads vec4 along the channels; with 1 or 3 channels there is no
// such vec4, and this layout instead reads dout as aligned vec4 along CO and writes dw in
// its HWIO layout directly.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.k_h * p.k_w * p.in_c, p.out_c, p.batch * p.out_h * p.out_w);
}

// A[m = tap, k = output pixel]: zero in the padding and past the last pixel.
fn x_at(m: u32, k: u32) -> f32 {
    if (k >= p.batch * p.out_h * p.out_w) {
        return 0.0;
    }
    let t = im2col(arrayLength(&x), k, m);
    return select(0.0, x[t.x], t.y != 0u);
}

fn load_a4(m: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(x_at(m, k), x_at(m, k + 1u), x_at(m, k + 2u), x_at(m, k + 3u));
}

fn dout_at(k: u32, n: u32) -> f32 {
    if (k >= p.batch * p.out_h * p.out_w || n >= p.out_c) {
        return 0.0;
    }
    let i = k * p.out_c + n;
    return dout[i >> 2u][i & 3u];
}

// B[k = output pixel, n = co]
fn load_b4(k: u32, n: u32) -> vec4<f32> {
    return vec4<f32>(dout_at(k, n), dout_at(k, n + 1u), dout_at(k, n + 2u), dout_at(k, n + 3u));
}

// For the subgroup core: K = B·OH·OW % 4 == 0 and CO % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    let len = arrayLength(&x);
    let t0 = im2col(len, k, m);
    let t1 = im2col(len, k + 1u, m);
    let t2 = im2col(len, k + 2u, m);
    let t3 = im2col(len, k + 3u, m);
    return vec4<f32>(
        select(0.0, x[t0.x], t0.y != 0u),
        select(0.0, x[t1.x], t1.y != 0u),
        select(0.0, x[t2.x], t2.y != 0u),
        select(0.0, x[t3.x], t3.y != 0u),
    );
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    return dout[(k * p.out_c + min(n, p.out_c - 4u)) >> 2u];
}

// (m, n) = (tap, co) is dw[tap, co], the HWIO layout.
fn store(m: u32, n: u32, v: f32) {
    let taps = p.k_h * p.k_w * p.in_c;
    if ((p.flags & 4u) != 0u) {
        // Split-K: dw is the partial-sum buffer [splits, taps, CO]; split_k_reduce finishes.
        let j = (split_index * taps + m) * p.out_c + n;
        if (j < arrayLength(&dw)) {
            dw[j] = v;
        }
        return;
    }
    let i = m * p.out_c + n;
    if (i >= arrayLength(&dw)) {
        return;
    }
    if ((p.flags & 2u) != 0u) {
        dw[i] += v;
    } else {
        dw[i] = v;
    }
}

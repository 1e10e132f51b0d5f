// conv2d as the GEMM im2col(x) · w: M = B·OH·OW, N = CO, K = KH·KW·CI, relu fused on
// request. out[n, oh, ow, co] = bias[co] + Σ x[n, oh·s+kh·d−pt, ow·s+kw·d−pl, ci] · w[kh, kw, ci, co]
// for the forward pass; the input gradient runs here too, as a convolution of the output
// gradient with the transposed kernel walked flipped, one dispatch per phase of a strided
// convolution's input pixels (conv2d.rs; the source mapping is in conv2d_common.wgsl).
// Operands (gemm_operands_*.wgsl): input1 = x (NHWC), input2 = w (HWIO, from texel
// w_offset). The launcher pads channels and filters to multiples of 4, so every load is
// one aligned texel.

// Both hold whole vec4s (out_c % 4 == 0).
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.batch * p.out_h * p.out_w, p.out_c, p.k_h * p.k_w * p.in_c);
}

// Aligned loaders (subgroup and texture cores): K and N are multiples of 4, rows arrive
// clamped, columns past N are clamped here (their results are never stored).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    let t = im2col(input1_len(), m, k);
    return select(vec4<f32>(0.0), input1_texel(t.x >> 2u), t.y != 0u);
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    return input2_texel(p.w_offset + ((k * p.out_c + min(n, p.out_c - 4u)) >> 2u));
}

// General loaders (portable and tiled cores): the same, zero outside the matrix.
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    let ok = m < p.batch * p.out_h * p.out_w;
    return select(vec4<f32>(0.0), load_a4_aligned(m, k), ok);
}

fn load_b4(k: u32, n: u32) -> vec4<f32> {
    // n is a multiple of 4, so n < out_c means all four columns exist.
    let ok = k < p.k_h * p.k_w * p.in_c && n < p.out_c;
    return select(vec4<f32>(0.0), load_b4_aligned(k, n), ok);
}

// The element index of output row m (a pixel), column n.
fn out_index(m: u32, n: u32) -> u32 {
    var pixel = m;
    if (p.step_h != 1u || p.step_w != 1u) {
        // One phase of a strided convolution's input gradient: every step-th pixel.
        let q = pixel_of(m, p.out_h, p.out_w);
        let y = q.y * p.step_h + p.phase_h;
        pixel = (q.x * p.store_h + y) * p.store_w + q.z * p.step_w + p.phase_w;
    }
    return pixel * p.out_c + n;
}

// Columns n .. n+4 of row m (n % 4 == 0): the subgroup and texture cores' stores.
fn store4(m: u32, n: u32, v: vec4<f32>) {
    let i = out_index(m, n) >> 2u;
    if (i >= arrayLength(&out)) {
        return;
    }
    var r = v + bias[n >> 2u];
    if ((p.flags & 2u) != 0u) {
        r += out[i];
    }
    if ((p.flags & 1u) != 0u) {
        r = max(r, vec4<f32>(0.0));
    }
    out[i] = r;
}

// One element: the portable and tiled cores' stores.
fn store(m: u32, n: u32, v: f32) {
    let i = out_index(m, n);
    if ((i >> 2u) >= arrayLength(&out)) {
        return;
    }
    var r = v + bias[n >> 2u][n & 3u];
    if ((p.flags & 2u) != 0u) {
        r += out[i >> 2u][i & 3u];
    }
    if ((p.flags & 1u) != 0u) {
        r = max(r, 0.0);
    }
    out[i >> 2u][i & 3u] = r;
}

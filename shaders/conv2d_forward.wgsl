// conv2d forward: out[n, oh, ow, co] = bias[co] + Σ x[n, oh·s+kh·d−pt, ow·s+kw·d−pl, ci] · w[kh, kw, ci, co]
// as the GEMM im2col(x) · w, M = B·OH·OW, N = CO, K = KH·KW·CI; relu fused on request.
// Operands (gemm_operands_*.wgsl): input1 = x (NHWC), input2 = w (HWIO). With channel
// counts divisible by 4 every load is one aligned texel.

@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.batch * p.out_h * p.out_w, p.out_c, p.k_h * p.k_w * p.in_c);
}

// im2col(x)[m, k .. k+4], one element at a time (in_c % 4 != 0).
fn x_row4(m: u32, k: u32) -> vec4<f32> {
    let len = input1_len();
    let o = pixel_of(m, p.out_h, p.out_w);
    let t0 = tap_of(k, p.in_c);
    let t1 = next_tap(t0, p.in_c);
    let t2 = next_tap(t1, p.in_c);
    let t3 = next_tap(t2, p.in_c);
    return vec4<f32>(x_elem(x_index(len, o, t0)), x_elem(x_index(len, o, t1)), x_elem(x_index(len, o, t2)), x_elem(x_index(len, o, t3)));
}

fn w_at(k: u32, n: u32) -> f32 {
    if (k >= p.k_h * p.k_w * p.in_c || n >= p.out_c) {
        return 0.0;
    }
    let i = k * p.out_c + n;
    return input2_elem(i);
}

// General loaders (portable and tiled cores): a vec4 path where the channels allow.
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    if ((p.in_c & 3u) == 0u) {
        return load_a4_aligned(m, k);
    }
    return x_row4(m, k);
}

fn load_b4(k: u32, n: u32) -> vec4<f32> {
    if ((p.out_c & 3u) == 0u) {
        // n is a multiple of 4, so n < out_c means all four columns exist.
        let ok = k < p.k_h * p.k_w * p.in_c && n < p.out_c;
        return select(vec4<f32>(0.0), input2_texel((k * p.out_c + n) >> 2u), ok);
    }
    return vec4<f32>(w_at(k, n), w_at(k, n + 1u), w_at(k, n + 2u), w_at(k, n + 3u));
}

// Unaligned loaders (subgroup cores, channels not multiples of 4): one path each, no branch.
fn load_a4_unaligned(m: u32, k: u32) -> vec4<f32> {
    return x_row4(m, k);
}

fn load_b4_unaligned(k: u32, n: u32) -> vec4<f32> {
    let i = k * p.out_c + n;
    let v = blend4(input2_texel(i >> 2u), input2_texel((i >> 2u) + 1u), i & 3u);
    return select(vec4<f32>(0.0), v, below4(n, p.out_c) & vec4<bool>(k < p.k_h * p.k_w * p.in_c));
}

// Aligned loaders (subgroup cores): in_c % 4 == 0 and out_c % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    let t = im2col(input1_len(), m, k);
    return select(vec4<f32>(0.0), input1_texel(t.x >> 2u), t.y != 0u);
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    return input2_texel((k * p.out_c + min(n, p.out_c - 4u)) >> 2u);
}

fn store(m: u32, n: u32, v: f32) {
    let i = m * p.out_c + n;
    if (i >= arrayLength(&out)) {
        return;
    }
    var r = v + bias[n];
    if ((p.flags & 1u) != 0u) {
        r = max(r, 0.0);
    }
    out[i] = r;
}

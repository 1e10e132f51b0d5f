// conv2d backward w.r.t. the input, gather-style (no atomics): every input pixel sums the
// output gradients of the windows that saw it.
// dx[n, ih, iw, ci] = Σ_{kh, kw, co} dout[n, oh, ow, co] · w[kh, kw, ci, co]
//   where oh·s = ih + pt − kh·d and ow·s = iw + pl − kw·d (exact division, in range;
//   d the dilation rate).
// GEMM: M = B·H·W, N = CI, K = KH·KW·CO. Operands (gemm_operands_*.wgsl): input1 = dout,
// input2 = the kernel with its last two axes swapped, wt[kh, kw, co, ci] (the launcher
// transposes it first), so both load as vec4 when the channel counts are multiples of 4.

@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.batch * p.in_h * p.in_w, p.in_c, p.k_h * p.k_w * p.out_c);
}

// Index into dout of input pixel `q` = (n, ih, iw) and tap `t` = (kh, kw, co): (index, 1),
// or (0, 0) where no window matches.
fn dout_index(q: vec3<u32>, t: vec3<u32>) -> vec2<u32> {
    let th = i32(q.y + p.pad_top) - i32(t.x * p.dil_h);
    let tw = i32(q.z + p.pad_left) - i32(t.y * p.dil_w);
    if (t.x >= p.k_h || th < 0 || tw < 0) {
        return vec2<u32>(0u, 0u);
    }
    let oh = divmod(u32(th), p.stride_h);
    let ow = divmod(u32(tw), p.stride_w);
    if (oh.y != 0u || ow.y != 0u || oh.x >= p.out_h || ow.x >= p.out_w) {
        return vec2<u32>(0u, 0u);
    }
    let i = ((q.x * p.out_h + oh.x) * p.out_w + ow.x) * p.out_c + t.z;
    return vec2<u32>(i, select(0u, 1u, i < input1_len()));
}

fn dout_elem(t: vec2<u32>) -> f32 {
    return select(0.0, input1_elem(t.x), t.y != 0u);
}

// A[m, k .. k+4] one element at a time (out_c % 4 != 0).
fn dout_row4(m: u32, k: u32) -> vec4<f32> {
    let q = pixel_of(m, p.in_h, p.in_w);
    let t0 = tap_of(k, p.out_c);
    let t1 = next_tap(t0, p.out_c);
    let t2 = next_tap(t1, p.out_c);
    let t3 = next_tap(t2, p.out_c);
    return vec4<f32>(dout_elem(dout_index(q, t0)), dout_elem(dout_index(q, t1)), dout_elem(dout_index(q, t2)), dout_elem(dout_index(q, t3)));
}

fn wt_at(k: u32, n: u32) -> f32 {
    if (k >= p.k_h * p.k_w * p.out_c || n >= p.in_c) {
        return 0.0;
    }
    let i = k * p.in_c + n;
    return input2_elem(i);
}

// General loaders (portable and tiled cores): a vec4 path where the channels allow.
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    if ((p.out_c & 3u) == 0u) {
        return load_a4_aligned(m, k);
    }
    return dout_row4(m, k);
}

fn load_b4(k: u32, n: u32) -> vec4<f32> {
    if ((p.in_c & 3u) == 0u) {
        let ok = k < p.k_h * p.k_w * p.out_c && n < p.in_c;
        return select(vec4<f32>(0.0), input2_texel((k * p.in_c + n) >> 2u), ok);
    }
    return vec4<f32>(wt_at(k, n), wt_at(k, n + 1u), wt_at(k, n + 2u), wt_at(k, n + 3u));
}

// Unaligned loaders (subgroup cores, channels not multiples of 4): one path each, no branch.
fn load_a4_unaligned(m: u32, k: u32) -> vec4<f32> {
    return dout_row4(m, k);
}

fn load_b4_unaligned(k: u32, n: u32) -> vec4<f32> {
    let i = k * p.in_c + n;
    let v = blend4(input2_texel(i >> 2u), input2_texel((i >> 2u) + 1u), i & 3u);
    return select(vec4<f32>(0.0), v, below4(n, p.in_c) & vec4<bool>(k < p.k_h * p.k_w * p.out_c));
}

// Aligned loaders (subgroup cores): out_c % 4 == 0 and in_c % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    let t = dout_index(pixel_of(m, p.in_h, p.in_w), tap_of(k, p.out_c));
    return select(vec4<f32>(0.0), input1_texel(t.x >> 2u), t.y != 0u);
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    return input2_texel((k * p.in_c + min(n, p.in_c - 4u)) >> 2u);
}

// For the texture core's AlignedB form (in_c % 4 == 0, out_c not): aligned along N, rows
// past K zero.
fn load_b4_aligned_k(k: u32, n: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), load_b4_aligned(k, n), k < p.k_h * p.k_w * p.out_c);
}

fn store(m: u32, n: u32, v: f32) {
    let i = m * p.in_c + n;
    if (i >= arrayLength(&dx)) {
        return;
    }
    var r = v;
    if ((p.flags & 2u) != 0u) {
        r += dx[i];
    }
    dx[i] = r;
}

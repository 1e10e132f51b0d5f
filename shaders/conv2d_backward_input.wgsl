// conv2d backward w.r.t. the input, gather-style (no atomics): every input pixel sums the
// output gradients of the windows that saw it.
// dx[n, ih, iw, ci] = Σ_{kh, kw, co} dout[n, oh, ow, co] · w[kh, kw, ci, co]
//   where oh·s = ih + pt − kh and ow·s = iw + pl − kw (exact division, in range).
// GEMM: M = B·H·W, N = CI, K = KH·KW·CO. B is the kernel with its last two axes swapped,
// wt[kh, kw, co, ci] (the launcher transposes it first), so both operands load as vec4
// when the channel counts are multiples of 4.

@group(0) @binding(1) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.batch * p.in_h * p.in_w, p.in_c, p.k_h * p.k_w * p.out_c);
}

// Index into dout of (input pixel m, tap k = (kh, kw, co)), or (0, 0) if no window matches.
fn dout_index(m: u32, k: u32) -> vec2<u32> {
    let kh_rem = divmod(k, p.k_w * p.out_c);
    let kh = kh_rem.x;
    if (kh >= p.k_h) {
        return vec2<u32>(0u, 0u);
    }
    let kw_co = divmod(kh_rem.y, p.out_c);
    let kw = kw_co.x;
    let co = kw_co.y;
    let n_r = divmod(m, p.in_h * p.in_w);
    let n = n_r.x;
    let ih_iw = divmod(n_r.y, p.in_w);
    let ih = ih_iw.x;
    let iw = ih_iw.y;
    let th = i32(ih + p.pad_top) - i32(kh);
    let tw = i32(iw + p.pad_left) - i32(kw);
    if (th < 0 || tw < 0) {
        return vec2<u32>(0u, 0u);
    }
    let oh = divmod(u32(th), p.stride_h);
    let ow = divmod(u32(tw), p.stride_w);
    if (oh.y != 0u || ow.y != 0u || oh.x >= p.out_h || ow.x >= p.out_w) {
        return vec2<u32>(0u, 0u);
    }
    let i = ((n * p.out_h + oh.x) * p.out_w + ow.x) * p.out_c + co;
    return vec2<u32>(i, select(0u, 1u, i < arrayLength(&dout) * 4u));
}

fn dout_at(m: u32, k: u32) -> f32 {
    let t = dout_index(m, k);
    if (t.y == 0u) {
        return 0.0;
    }
    return dout[t.x >> 2u][t.x & 3u];
}

fn load_a4(m: u32, k: u32) -> vec4<f32> {
    if ((p.out_c & 3u) == 0u) {
        let t = dout_index(m, k);
        return select(vec4<f32>(0.0), dout[t.x >> 2u], t.y != 0u);
    }
    return vec4<f32>(dout_at(m, k), dout_at(m, k + 1u), dout_at(m, k + 2u), dout_at(m, k + 3u));
}

fn wt_at(k: u32, n: u32) -> f32 {
    if (k >= p.k_h * p.k_w * p.out_c || n >= p.in_c) {
        return 0.0;
    }
    let i = k * p.in_c + n;
    return wt[i >> 2u][i & 3u];
}

fn load_b4(k: u32, n: u32) -> vec4<f32> {
    if ((p.in_c & 3u) == 0u) {
        let ok = k < p.k_h * p.k_w * p.out_c && n < p.in_c;
        return select(vec4<f32>(0.0), wt[(k * p.in_c + n) >> 2u], ok);
    }
    return vec4<f32>(wt_at(k, n), wt_at(k, n + 1u), wt_at(k, n + 2u), wt_at(k, n + 3u));
}

// For the subgroup core: out_c % 4 == 0 and in_c % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    let t = dout_index(m, k);
    return select(vec4<f32>(0.0), dout[t.x >> 2u], t.y != 0u);
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    return wt[(k * p.in_c + min(n, p.in_c - 4u)) >> 2u];
}

fn store(m: u32, n: u32, v: f32) {
    let i = m * p.in_c + n;
    if (i >= arrayLength(&dx)) {
        return;
    }
    if ((p.flags & 2u) != 0u) {
        dx[i] += v;
    } else {
        dx[i] = v;
    }
}

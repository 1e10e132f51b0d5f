// conv2d forward: out[n, oh, ow, co] = bias[co] + Σ x[n, oh·s+kh−pt, ow·s+kw−pl, ci] · w[kh, kw, ci, co]
// as the GEMM im2col(x) · w, M = B·OH·OW, N = CO, K = KH·KW·CI; relu fused on request.
// Inputs are viewed as vec4 arrays: with channel counts divisible by 4 every load is one
// aligned vec4 (lavapipe turns each scalar load into a per-lane loop, so this matters).

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.batch * p.out_h * p.out_w, p.out_c, p.k_h * p.k_w * p.in_c);
}

fn x_at(row: u32, col: u32) -> f32 {
    let t = im2col(arrayLength(&x) * 4u, row, col);
    if (t.y == 0u) {
        return 0.0;
    }
    return x[t.x >> 2u][t.x & 3u];
}

fn load_a4(m: u32, k: u32) -> vec4<f32> {
    if ((p.in_c & 3u) == 0u) {
        let t = im2col(arrayLength(&x) * 4u, m, k);
        return select(vec4<f32>(0.0), x[t.x >> 2u], t.y != 0u);
    }
    return vec4<f32>(x_at(m, k), x_at(m, k + 1u), x_at(m, k + 2u), x_at(m, k + 3u));
}

fn w_at(k: u32, n: u32) -> f32 {
    if (k >= p.k_h * p.k_w * p.in_c || n >= p.out_c) {
        return 0.0;
    }
    let i = k * p.out_c + n;
    return w[i >> 2u][i & 3u];
}

fn load_b4(k: u32, n: u32) -> vec4<f32> {
    if ((p.out_c & 3u) == 0u) {
        // n is a multiple of 4, so n < out_c means all four columns exist.
        let ok = k < p.k_h * p.k_w * p.in_c && n < p.out_c;
        return select(vec4<f32>(0.0), w[(k * p.out_c + n) >> 2u], ok);
    }
    return vec4<f32>(w_at(k, n), w_at(k, n + 1u), w_at(k, n + 2u), w_at(k, n + 3u));
}

// For the subgroup core: in_c % 4 == 0 and out_c % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    let t = im2col(arrayLength(&x) * 4u, m, k);
    return select(vec4<f32>(0.0), x[t.x >> 2u], t.y != 0u);
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    return w[(k * p.out_c + min(n, p.out_c - 4u)) >> 2u];
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

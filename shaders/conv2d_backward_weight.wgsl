// conv2d backward w.r.t. the weights, computed transposed:
// dw[kh, kw, ci, co] = Σ_{n, oh, ow} dout[n, oh, ow, co] · x[n, oh·s+kh−pt, ow·s+kw−pl, ci]
// as the GEMM doutᵀ · im2col(x): M = CO, N = KH·KW·CI, K = B·OH·OW. This way the operand
// that needs the im2col index maths (B) is read as vec4 along its contiguous channels,
// and A needs none; K is long, so the launcher splits it over workgroups.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.out_c, p.k_h * p.k_w * p.in_c, p.batch * p.out_h * p.out_w);
}

fn dout_at(k: u32, m: u32) -> f32 {
    if (k >= p.batch * p.out_h * p.out_w) {
        return 0.0;
    }
    return dout[k * p.out_c + m];
}

// A[m = co, k = output pixel]
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(dout_at(k, m), dout_at(k + 1u, m), dout_at(k + 2u, m), dout_at(k + 3u, m));
}

fn x_at(k: u32, n: u32) -> f32 {
    if (k >= p.batch * p.out_h * p.out_w) {
        return 0.0;
    }
    let t = im2col(arrayLength(&x) * 4u, k, n);
    if (t.y == 0u) {
        return 0.0;
    }
    return x[t.x >> 2u][t.x & 3u];
}

// B[k = output pixel, n = tap (kh, kw, ci)]
fn load_b4(k: u32, n: u32) -> vec4<f32> {
    if ((p.in_c & 3u) == 0u) {
        let t = im2col(arrayLength(&x) * 4u, k, n);
        let ok = t.y != 0u && k < p.batch * p.out_h * p.out_w;
        return select(vec4<f32>(0.0), x[t.x >> 2u], ok);
    }
    return vec4<f32>(x_at(k, n), x_at(k, n + 1u), x_at(k, n + 2u), x_at(k, n + 3u));
}

// For the subgroup core: in_c % 4 == 0 and K = B·OH·OW % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    let c = p.out_c;
    return vec4<f32>(dout[k * c + m], dout[(k + 1u) * c + m], dout[(k + 2u) * c + m], dout[(k + 3u) * c + m]);
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    let t = im2col(arrayLength(&x) * 4u, k, min(n, p.k_h * p.k_w * p.in_c - 4u));
    return select(vec4<f32>(0.0), x[t.x >> 2u], t.y != 0u);
}

// (m, n) = (co, tap) lands at dw[tap, co], the HWIO layout.
fn store(m: u32, n: u32, v: f32) {
    let taps = p.k_h * p.k_w * p.in_c;
    if ((p.flags & 4u) != 0u) {
        // Split-K: dw is the partial-sum buffer [splits, taps, CO]; split_k_reduce finishes.
        let j = (split_index * taps + n) * p.out_c + m;
        if (j < arrayLength(&dw)) {
            dw[j] = v;
        }
        return;
    }
    let i = n * p.out_c + m;
    if (i >= arrayLength(&dw)) {
        return;
    }
    if ((p.flags & 2u) != 0u) {
        dw[i] += v;
    } else {
        dw[i] = v;
    }
}

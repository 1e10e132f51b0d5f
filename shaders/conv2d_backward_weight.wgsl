// conv2d backward w.r.t. the weights:
// dw[kh, kw, ci, co] = Σ_{n, oh, ow} x[n, oh·s+kh−pt, ow·s+kw−pl, ci] · dout[n, oh, ow, co]
// GEMM im2col(x)ᵀ · dout: M = KH·KW·CI, N = CO, K = B·OH·OW.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.k_h * p.k_w * p.in_c, p.out_c, p.batch * p.out_h * p.out_w);
}

fn x_at(m: u32, k: u32) -> f32 {
    if (k >= p.batch * p.out_h * p.out_w) {
        return 0.0;
    }
    let t = im2col(arrayLength(&x), k, m);
    if (t.y == 0u) {
        return 0.0;
    }
    return x[t.x];
}

fn load_a4(m: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(x_at(m, k), x_at(m, k + 1u), x_at(m, k + 2u), x_at(m, k + 3u));
}

fn dout_at(k: u32, n: u32) -> f32 {
    if (k >= p.batch * p.out_h * p.out_w || n >= p.out_c) {
        return 0.0;
    }
    return dout[k * p.out_c + n];
}

fn load_b4(k: u32, n: u32) -> vec4<f32> {
    return vec4<f32>(dout_at(k, n), dout_at(k, n + 1u), dout_at(k, n + 2u), dout_at(k, n + 3u));
}

fn store(m: u32, n: u32, v: f32) {
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

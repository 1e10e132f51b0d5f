// Dense matmul: C[M, N] = op(A) · op(B) (+ bias[N]) (relu) (+ C), where op() optionally
// transposes. Forward uses A·B with bias (and relu); dX uses A·Bᵀ; dW uses Aᵀ·B.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32, // 1: A is stored transposed (K×M), 2: B transposed (N×K), 4: add bias, 8: relu, 16: accumulate into C, 32: write split-K partials
    k_chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(p.m, p.n, p.k);
}

fn gemm_k_chunk() -> u32 {
    return p.k_chunk;
}

fn a_at(m: u32, k: u32) -> f32 {
    if (k >= p.k) {
        return 0.0;
    }
    if ((p.flags & 1u) != 0u) {
        return a[k * p.m + m];
    }
    return a[m * p.k + k];
}

fn b_at(k: u32, n: u32) -> f32 {
    if (k >= p.k || n >= p.n) {
        return 0.0;
    }
    if ((p.flags & 2u) != 0u) {
        return b[n * p.k + k];
    }
    return b[k * p.n + n];
}

fn load_a4(m: u32, k: u32) -> vec4<f32> {
    if ((p.flags & 1u) == 0u && k + 3u < p.k) {
        let i = m * p.k + k;
        return vec4<f32>(a[i], a[i + 1u], a[i + 2u], a[i + 3u]);
    }
    return vec4<f32>(a_at(m, k), a_at(m, k + 1u), a_at(m, k + 2u), a_at(m, k + 3u));
}

fn load_b4(k: u32, n: u32) -> vec4<f32> {
    if ((p.flags & 2u) == 0u && k < p.k && n + 3u < p.n) {
        let i = k * p.n + n;
        return vec4<f32>(b[i], b[i + 1u], b[i + 2u], b[i + 3u]);
    }
    return vec4<f32>(b_at(k, n), b_at(k, n + 1u), b_at(k, n + 2u), b_at(k, n + 3u));
}

fn store(m: u32, n: u32, v: f32) {
    if ((p.flags & 32u) != 0u) {
        // Split-K: C is the partial-sum buffer [splits, M, N]; split_k_reduce finishes.
        let j = (split_index * p.m + m) * p.n + n;
        if (j < arrayLength(&c)) {
            c[j] = v;
        }
        return;
    }
    let i = m * p.n + n;
    if (i >= arrayLength(&c)) {
        return;
    }
    var r = v;
    if ((p.flags & 4u) != 0u) {
        r += bias[n];
    }
    if ((p.flags & 8u) != 0u) {
        r = max(r, 0.0);
    }
    if ((p.flags & 16u) != 0u) {
        r += c[i];
    }
    c[i] = r;
}

// Dense matmul: C[M, N] = A[M, K] · B[K, N] (+ bias[N]) (relu) (+ C). The kernel reads
// row-major operands only — as aligned vec4s when K (for A) or N (for B) is a multiple of
// 4. For Aᵀ or Bᵀ (dX = dY·Wᵀ, dW = Xᵀ·dY) the launcher either transposes an operand
// first or computes Cᵀ = Bᵀ·Aᵀ with a transposed store, whichever moves less data.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32, // 4: add bias, 8: relu, 16: accumulate into C, 32: write split-K partials, 64: C stored transposed ([N, M]), 128: B stored transposed (narrow core)
    k_chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
// Operands (gemm_operands_*.wgsl): input1 = A, input2 = B.
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
    let i = m * p.k + k;
    return input1_elem(i);
}

fn b_elem(i: u32) -> f32 {
    return input2_elem(i);
}

fn b_at(k: u32, n: u32) -> f32 {
    if (k >= p.k || n >= p.n) {
        return 0.0;
    }
    return b_elem(k * p.n + n);
}

// General loaders (portable and tiled cores): a vec4 path where the shape allows.
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    if ((p.k & 3u) == 0u) {
        // k is a multiple of 4: k < K means all four exist.
        return select(vec4<f32>(0.0), input1_texel((m * p.k + k) >> 2u), k < p.k);
    }
    return vec4<f32>(a_at(m, k), a_at(m, k + 1u), a_at(m, k + 2u), a_at(m, k + 3u));
}

fn load_b4(k: u32, n: u32) -> vec4<f32> {
    if ((p.n & 3u) == 0u) {
        return select(vec4<f32>(0.0), input2_texel((k * p.n + n) >> 2u), k < p.k && n < p.n);
    }
    return vec4<f32>(b_at(k, n), b_at(k, n + 1u), b_at(k, n + 2u), b_at(k, n + 3u));
}

// Unaligned loaders (subgroup cores): four contiguous elements from two texels, one path.
fn load_a4_unaligned(m: u32, k: u32) -> vec4<f32> {
    let i = m * p.k + k;
    let v = blend4(input1_texel(i >> 2u), input1_texel((i >> 2u) + 1u), i & 3u);
    return select(vec4<f32>(0.0), v, below4(k, p.k));
}

fn load_b4_unaligned(k: u32, n: u32) -> vec4<f32> {
    let i = k * p.n + n;
    let v = blend4(input2_texel(i >> 2u), input2_texel((i >> 2u) + 1u), i & 3u);
    return select(vec4<f32>(0.0), v, below4(n, p.n) & vec4<bool>(k < p.k));
}

// Aligned loaders (subgroup cores): K % 4 == 0 and N % 4 == 0 (the launcher checks).
fn load_a4_aligned(m: u32, k: u32) -> vec4<f32> {
    return input1_texel((m * p.k + k) >> 2u);
}

fn load_b4_aligned(k: u32, n: u32) -> vec4<f32> {
    return input2_texel((k * p.n + min(n, p.n - 4u)) >> 2u);
}

// For the texture core's AlignedB form (N % 4 == 0, K not): aligned along N, rows past K
// zero.
fn load_b4_aligned_k(k: u32, n: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), load_b4_aligned(k, n), k < p.k);
}

// For the narrow-output core: B[k..k+4, n] read in place, from B ([K, N]) or, with flag
// 128, from Bᵀ ([N, K]). Four scalar loads cost about one vec4 load on lavapipe (each is a
// per-lane loop), far less than transposing B first.
fn load_bt4_aligned(n: u32, k: u32) -> vec4<f32> {
    let bt = (p.flags & 128u) != 0u;
    let step = select(p.n, 1u, bt);
    let i = select(k * p.n + n, n * p.k + k, bt);
    let j = i + step;
    let l = j + step;
    let o = l + step;
    return vec4<f32>(b_elem(i), b_elem(j), b_elem(l), b_elem(o));
}

fn store(m: u32, n: u32, v: f32) {
    // Split-K: C is the partial-sum buffer [splits, M, N] (split_k_reduce finishes, and the
    // launcher clears the epilogue flags). Transposed store: the launcher computed
    // Cᵀ = Bᵀ·Aᵀ because that needed no (or a smaller) operand transpose; the result still
    // lands in C's layout. One store statement for every case: each store in the code is
    // a per-lane loop on lavapipe.
    var i = select(m * p.n + n, n * p.m + m, (p.flags & 64u) != 0u);
    if ((p.flags & 32u) != 0u) {
        i = (split_index * p.m + m) * p.n + n;
    }
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

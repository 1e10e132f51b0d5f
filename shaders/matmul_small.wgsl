// Small dense matmul: C[M, N] = op(A)·op(B) (+ bias[N]) (relu) (+ C), one invocation per
// output element, operands read in place whatever their transposes. For the GEMMs too
// small for the tiled cores to pay off (a classifier head): one pipeline serves a dense
// layer's forward pass and both gradients, and compiles in a tenth of the time of the
// three GEMM-core forms it replaces (matmul.rs, SMALL_GEMM_MACS).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32, // 1: A stored [K, M], 2: B stored [N, K], 4: add bias, 8: relu, 16: accumulate into C
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let p = params;
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= p.m * p.n || i >= arrayLength(&c)) {
        return;
    }
    let row = i / p.n;
    let col = i % p.n;
    let ta = (p.flags & 1u) != 0u;
    let tb = (p.flags & 2u) != 0u;
    let a_step = select(1u, p.m, ta);
    let b_step = select(p.n, 1u, tb);
    var ai = select(row * p.k, row, ta);
    var bi = select(col, col * p.k, tb);
    var acc = 0.0;
    for (var k = 0u; k < p.k; k++) {
        acc += a[ai] * b[bi];
        ai += a_step;
        bi += b_step;
    }
    // Every branch below is uniform (flags); the one store is not under any of them.
    if ((p.flags & 4u) != 0u) {
        acc += bias[col];
    }
    if ((p.flags & 8u) != 0u) {
        acc = max(acc, 0.0);
    }
    if ((p.flags & 16u) != 0u) {
        acc += c[i];
    }
    c[i] = acc;
}

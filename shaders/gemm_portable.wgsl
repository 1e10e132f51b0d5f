// ---- GEMM core, portable variant (no subgroups, no workgroup memory) ----
// C[M, N] = A[M, K] · B[K, N], where the op file above defines how A and B are read
// (`load_a4`, `load_b4`: four consecutive k, resp. n, zero outside the matrix) and how a
// result is written (`store`); `gemm_k_chunk()` is the K range one workgroup sums (K
// itself unless the op splits K over workgroups, then store() writes partial sums
// selected by `split_index` and a reduction follows). 64 invocations; each keeps a 4×4 register block, so one
// workgroup computes a 32×32 tile. Rows past M are clamped on load and never stored.

const TILE: u32 = 32u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let dims = gemm_dims();
    let t = gemm_tile(wid, nwg, dims, TILE, TILE);
    if (!t.valid) {
        return;
    }
    let k_begin = t.k_begin;
    let k_end = t.k_end;
    let m0 = t.m0 + (lid / 8u) * 4u;
    let n0 = t.n0 + (lid % 8u) * 4u;
    if (m0 >= dims.x || n0 >= dims.y) {
        return;
    }
    let last = dims.x - 1u;
    let r0 = m0;
    let r1 = min(m0 + 1u, last);
    let r2 = min(m0 + 2u, last);
    let r3 = min(m0 + 3u, last);
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k = k_begin; k < k_end; k += 4u) {
        let b0 = load_b4(k, n0);
        let b1 = load_b4(k + 1u, n0);
        let b2 = load_b4(k + 2u, n0);
        let b3 = load_b4(k + 3u, n0);
        let a0 = load_a4(r0, k);
        let a1 = load_a4(r1, k);
        let a2 = load_a4(r2, k);
        let a3 = load_a4(r3, k);
        c0 += a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
        c1 += a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
        c2 += a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
        c3 += a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
    }
    store_row(m0, n0, c0, dims);
    store_row(m0 + 1u, n0, c1, dims);
    store_row(m0 + 2u, n0, c2, dims);
    store_row(m0 + 3u, n0, c3, dims);
}

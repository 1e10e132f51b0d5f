// ---- GEMM core, subgroup variant for narrow outputs (N ≤ 16) ----
// C[M, N] = A[M, K] · B[K, N] where the op supplies B *transposed*: `sg_load_a4(m, k)` is
// A[m, k..k+4] and `sg_load_bt4(n, k)` is B[k..k+4, n], both vec4 along K (aligned: the
// launcher picks this core only when K % 4 == 0). The main core gives each lane 8 columns
// of a 64-column tile; with N = 10 (a classifier layer) six of its eight lanes would load
// and multiply nothing useful. Here a lane owns 2 columns of a 32×16 tile: per step of 4 k
// it loads four rows of A (shared through subgroupBroadcast) and two columns of B, and
// keeps 32×2 vec4 partial sums along K, reduced once at the end.

const TM: u32 = 32u;
const TN: u32 = 16u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
    p = params;
    let dims = gemm_dims();
    let t = gemm_tile(wid, nwg, dims, TM, TN);
    if (!t.valid) {
        return;
    }
    let m0 = t.m0;
    let n0 = t.n0 + lane * 2u;
    let last_n = dims.y - 1u;
    let r = lane_rows(m0, lane, dims);
    let c0 = min(n0, last_n);
    let c1 = min(n0 + 1u, last_n);
    var acc: array<vec4<f32>, 64>;
    for (var k = t.k_begin; k < t.k_end; k += 4u) {
        let a0 = sg_load_a4(r.x, k);
        let a1 = sg_load_a4(r.y, k);
        let a2 = sg_load_a4(r.z, k);
        let a3 = sg_load_a4(r.w, k);
        let b0 = sg_load_bt4(c0, k);
        let b1 = sg_load_bt4(c1, k);
        { let a = subgroupBroadcast(a0, 0u); acc[0] += a * b0; acc[1] += a * b1; }
        { let a = subgroupBroadcast(a0, 1u); acc[2] += a * b0; acc[3] += a * b1; }
        { let a = subgroupBroadcast(a0, 2u); acc[4] += a * b0; acc[5] += a * b1; }
        { let a = subgroupBroadcast(a0, 3u); acc[6] += a * b0; acc[7] += a * b1; }
        { let a = subgroupBroadcast(a0, 4u); acc[8] += a * b0; acc[9] += a * b1; }
        { let a = subgroupBroadcast(a0, 5u); acc[10] += a * b0; acc[11] += a * b1; }
        { let a = subgroupBroadcast(a0, 6u); acc[12] += a * b0; acc[13] += a * b1; }
        { let a = subgroupBroadcast(a0, 7u); acc[14] += a * b0; acc[15] += a * b1; }
        { let a = subgroupBroadcast(a1, 0u); acc[16] += a * b0; acc[17] += a * b1; }
        { let a = subgroupBroadcast(a1, 1u); acc[18] += a * b0; acc[19] += a * b1; }
        { let a = subgroupBroadcast(a1, 2u); acc[20] += a * b0; acc[21] += a * b1; }
        { let a = subgroupBroadcast(a1, 3u); acc[22] += a * b0; acc[23] += a * b1; }
        { let a = subgroupBroadcast(a1, 4u); acc[24] += a * b0; acc[25] += a * b1; }
        { let a = subgroupBroadcast(a1, 5u); acc[26] += a * b0; acc[27] += a * b1; }
        { let a = subgroupBroadcast(a1, 6u); acc[28] += a * b0; acc[29] += a * b1; }
        { let a = subgroupBroadcast(a1, 7u); acc[30] += a * b0; acc[31] += a * b1; }
        { let a = subgroupBroadcast(a2, 0u); acc[32] += a * b0; acc[33] += a * b1; }
        { let a = subgroupBroadcast(a2, 1u); acc[34] += a * b0; acc[35] += a * b1; }
        { let a = subgroupBroadcast(a2, 2u); acc[36] += a * b0; acc[37] += a * b1; }
        { let a = subgroupBroadcast(a2, 3u); acc[38] += a * b0; acc[39] += a * b1; }
        { let a = subgroupBroadcast(a2, 4u); acc[40] += a * b0; acc[41] += a * b1; }
        { let a = subgroupBroadcast(a2, 5u); acc[42] += a * b0; acc[43] += a * b1; }
        { let a = subgroupBroadcast(a2, 6u); acc[44] += a * b0; acc[45] += a * b1; }
        { let a = subgroupBroadcast(a2, 7u); acc[46] += a * b0; acc[47] += a * b1; }
        { let a = subgroupBroadcast(a3, 0u); acc[48] += a * b0; acc[49] += a * b1; }
        { let a = subgroupBroadcast(a3, 1u); acc[50] += a * b0; acc[51] += a * b1; }
        { let a = subgroupBroadcast(a3, 2u); acc[52] += a * b0; acc[53] += a * b1; }
        { let a = subgroupBroadcast(a3, 3u); acc[54] += a * b0; acc[55] += a * b1; }
        { let a = subgroupBroadcast(a3, 4u); acc[56] += a * b0; acc[57] += a * b1; }
        { let a = subgroupBroadcast(a3, 5u); acc[58] += a * b0; acc[59] += a * b1; }
        { let a = subgroupBroadcast(a3, 6u); acc[60] += a * b0; acc[61] += a * b1; }
        { let a = subgroupBroadcast(a3, 7u); acc[62] += a * b0; acc[63] += a * b1; }
    }
    // Rows leave through acc[0] and acc[1]: one copy of the op's store() in a loop instead
    // of 32 inlined ones (see shift_rows in gemm_common.wgsl).
    let rows = min(TM, dims.x - m0);
    for (var i = 0u; i < rows; i++) {
        store_row2(m0 + i, n0, acc[0], acc[1], dims);
        shift_rows(&acc);
    }
}

fn store_row2(m: u32, n0: u32, s0: vec4<f32>, s1: vec4<f32>, dims: vec3<u32>) {
    if (m >= dims.x) {
        return;
    }
    let one = vec4<f32>(1.0);
    if (n0 < dims.y) {
        store(m, n0, dot(s0, one));
    }
    if (n0 + 1u < dims.y) {
        store(m, n0 + 1u, dot(s1, one));
    }
}

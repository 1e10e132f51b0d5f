// ---- GEMM core, subgroup variant ----
// C[M, N] = A[M, K] · B[K, N] with A, B, C defined by the op file above (see
// gemm_portable.wgsl for the contract). This core loads through `sg_load_a4(m, k)` /
// `sg_load_b4(k, n)`, bound by name to the op's aligned loaders (K and the vec4-loaded
// axes multiples of 4: no bounds logic in the hot loop; rows arrive clamped, columns past
// N are clamped by the loader) or to its unaligned ones (one branch-free path each, zero
// past the matrix). Tuned for lavapipe, where each invocation is one
// SIMD lane and workgroup memory is slow: a workgroup is 8 lanes of one subgroup; each
// lane owns 8 columns (two vec4) of a 32×64 tile, loads four rows of A as vec4 along K and
// shares them with subgroupBroadcast, so every lane reuses each A and B load 8–32 times.
// (Naga takes subgroup built-ins from the device feature; it rejects `enable subgroups;`.)


const TM: u32 = 32u;
const TN: u32 = 64u;

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
    let n0 = t.n0 + lane * 8u;
    let r = lane_rows(m0, lane, dims);
    var acc: array<vec4<f32>, 64>;
    for (var k = t.k_begin; k < t.k_end; k += 4u) {
        let a0 = sg_load_a4(r.x, k);
        let a1 = sg_load_a4(r.y, k);
        let a2 = sg_load_a4(r.z, k);
        let a3 = sg_load_a4(r.w, k);
        let b0l = sg_load_b4(k, n0);
        let b0h = sg_load_b4(k, n0 + 4u);
        let b1l = sg_load_b4(k + 1u, n0);
        let b1h = sg_load_b4(k + 1u, n0 + 4u);
        let b2l = sg_load_b4(k + 2u, n0);
        let b2h = sg_load_b4(k + 2u, n0 + 4u);
        let b3l = sg_load_b4(k + 3u, n0);
        let b3h = sg_load_b4(k + 3u, n0 + 4u);
        { let a = subgroupBroadcast(a0, 0u); acc[0] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[1] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a0, 1u); acc[2] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[3] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a0, 2u); acc[4] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[5] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a0, 3u); acc[6] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[7] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a0, 4u); acc[8] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[9] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a0, 5u); acc[10] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[11] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a0, 6u); acc[12] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[13] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a0, 7u); acc[14] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[15] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a1, 0u); acc[16] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[17] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a1, 1u); acc[18] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[19] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a1, 2u); acc[20] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[21] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a1, 3u); acc[22] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[23] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a1, 4u); acc[24] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[25] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a1, 5u); acc[26] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[27] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a1, 6u); acc[28] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[29] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a1, 7u); acc[30] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[31] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a2, 0u); acc[32] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[33] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a2, 1u); acc[34] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[35] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a2, 2u); acc[36] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[37] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a2, 3u); acc[38] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[39] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a2, 4u); acc[40] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[41] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a2, 5u); acc[42] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[43] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a2, 6u); acc[44] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[45] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a2, 7u); acc[46] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[47] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a3, 0u); acc[48] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[49] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a3, 1u); acc[50] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[51] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a3, 2u); acc[52] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[53] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a3, 3u); acc[54] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[55] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a3, 4u); acc[56] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[57] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a3, 5u); acc[58] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[59] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a3, 6u); acc[60] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[61] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
        { let a = subgroupBroadcast(a3, 7u); acc[62] += a.x * b0l + a.y * b1l + a.z * b2l + a.w * b3l; acc[63] += a.x * b0h + a.y * b1h + a.z * b2h + a.w * b3h; }
    }
    // Rows leave through acc[0] and acc[1]: one copy of the op's store() in a loop instead
    // of 32 inlined ones (see shift_rows in gemm_common.wgsl).
    let rows = min(TM, dims.x - m0);
    for (var i = 0u; i < rows; i++) {
        store_row8(m0 + i, n0, acc[0], acc[1], dims);
        shift_rows(&acc);
    }
}

// Columns n0 .. n0+8 of row m as two vec4s: the ops on this core have N % 4 == 0, so a
// vec4 of columns lies wholly inside or outside the output, and an op whose rows are
// contiguous stores each with one instruction (per-element stores were ~45% of
// conv2d_forward's compile on Mesa 25.0, and per-lane loops at run time).
fn store_row8(m: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>, dims: vec3<u32>) {
    if (m >= dims.x) {
        return;
    }
    if (n0 < dims.y) {
        store4(m, n0, lo);
    }
    if (n0 + 4u < dims.y) {
        store4(m, n0 + 4u, hi);
    }
}

// ---- GEMM core, subgroup variant with 32-column tiles (matmul) ----
// The subgroup core of gemm_subgroup.wgsl (same contract, same loaders by name) with
// each lane owning one vec4 of columns instead of two: a 32×32 tile and half the
// register block. Dense layers have M = batch (32) and N or K of a few dozen to a few
// thousand, where the narrower tile keeps every lane busy (dense dX 32×4096×128: 2.0 →
// 1.0 ms) and the pipeline compiles in half the time (Mesa 25: 0.55 → 0.21 s); the
// wide tile stays the better one for the im2col GEMMs of the conv passes.

const TM: u32 = 32u;
const TN: u32 = 32u;

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
    let n0 = t.n0 + lane * 4u;
    let r = lane_rows(m0, lane, dims);
    var acc: array<vec4<f32>, 32>;
    for (var k = t.k_begin; k < t.k_end; k += 4u) {
        let a0 = sg_load_a4(r.x, k);
        let a1 = sg_load_a4(r.y, k);
        let a2 = sg_load_a4(r.z, k);
        let a3 = sg_load_a4(r.w, k);
        let b0 = sg_load_b4(k, n0);
        let b1 = sg_load_b4(k + 1u, n0);
        let b2 = sg_load_b4(k + 2u, n0);
        let b3 = sg_load_b4(k + 3u, n0);
        { let a = subgroupBroadcast(a0, 0u); acc[0] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a0, 1u); acc[1] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a0, 2u); acc[2] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a0, 3u); acc[3] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a0, 4u); acc[4] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a0, 5u); acc[5] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a0, 6u); acc[6] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a0, 7u); acc[7] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a1, 0u); acc[8] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a1, 1u); acc[9] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a1, 2u); acc[10] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a1, 3u); acc[11] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a1, 4u); acc[12] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a1, 5u); acc[13] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a1, 6u); acc[14] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a1, 7u); acc[15] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a2, 0u); acc[16] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a2, 1u); acc[17] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a2, 2u); acc[18] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a2, 3u); acc[19] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a2, 4u); acc[20] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a2, 5u); acc[21] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a2, 6u); acc[22] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a2, 7u); acc[23] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a3, 0u); acc[24] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a3, 1u); acc[25] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a3, 2u); acc[26] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a3, 3u); acc[27] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a3, 4u); acc[28] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a3, 5u); acc[29] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a3, 6u); acc[30] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
        { let a = subgroupBroadcast(a3, 7u); acc[31] += a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }
    }
    // Rows leave through acc[0] (see shift_rows in gemm_common.wgsl).
    let rows = min(TM, dims.x - m0);
    for (var i = 0u; i < rows; i++) {
        store_row(m0 + i, n0, acc[0], dims);
        shift_rows_by_one(&acc);
    }
}

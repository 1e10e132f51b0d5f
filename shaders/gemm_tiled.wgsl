// ---- GEMM core, tiled variant (workgroup memory; for real GPUs) ----
// Same contract as the portable core (the op's general `load_a4`/`load_b4`, `store`,
// `gemm_k_chunk()`). 256 invocations compute a 64×64 tile of C: each K step stages a
// 64×16 slice of A and a 16×64 slice of B in workgroup memory (one vec4 load per
// invocation for each), then every invocation accumulates its 4×4 block from there. A GPU
// serves those re-reads from on-chip memory; each global element is loaded once per tile
// instead of 16 times. (On lavapipe the barriers cost more than they save: the subgroup
// core is faster there.)

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> tiled_a: array<vec4<f32>, 256>; // [row * 4 + k / 4]: 64 rows × 16 k
var<workgroup> tiled_b: array<vec4<f32>, 256>; // [k * 16 + n / 4]: 16 k × 64 columns
var<workgroup> tiled_k: vec2<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let dims = gemm_dims();
    let t = gemm_tile(wid, nwg, dims, TILE, TILE);
    // Barriers must sit in uniform control flow, so every invocation runs the same K loop
    // with bounds that WGSL can see are uniform (a spare workgroup runs it zero times).
    if (lid == 0u) {
        tiled_k = select(vec2<u32>(0u), vec2<u32>(t.k_begin, t.k_end), t.valid);
    }
    let kr = workgroupUniformLoad(&tiled_k);
    // What this invocation stages: A[a_row, k + a_k .. +4] and B[k + b_k, b_col .. +4].
    let a_row = t.m0 + lid / 4u;
    let a_k = (lid % 4u) * 4u;
    let b_k = lid / 16u;
    let b_col = t.n0 + (lid % 16u) * 4u;
    // What it computes: rows ty*4 .. +4 and columns tx*4 .. +4 of the tile.
    let ty = lid / 16u;
    let tx = lid % 16u;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k = kr.x; k < kr.y; k += TILE_K) {
        // K chunks start at multiples of 4, so a vec4 of k is wholly inside or outside.
        var av = vec4<f32>(0.0);
        if (a_row < dims.x && k + a_k < kr.y) {
            av = load_a4(a_row, k + a_k);
        }
        var bv = vec4<f32>(0.0);
        if (b_col < dims.y && k + b_k < kr.y) {
            bv = load_b4(k + b_k, b_col);
        }
        tiled_a[lid] = av;
        tiled_b[lid] = bv;
        workgroupBarrier();
        for (var q = 0u; q < 4u; q++) {
            let b0 = tiled_b[(q * 4u) * 16u + tx];
            let b1 = tiled_b[(q * 4u + 1u) * 16u + tx];
            let b2 = tiled_b[(q * 4u + 2u) * 16u + tx];
            let b3 = tiled_b[(q * 4u + 3u) * 16u + tx];
            let a0 = tiled_a[(ty * 4u) * 4u + q];
            let a1 = tiled_a[(ty * 4u + 1u) * 4u + q];
            let a2 = tiled_a[(ty * 4u + 2u) * 4u + q];
            let a3 = tiled_a[(ty * 4u + 3u) * 4u + q];
            c0 += a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
            c1 += a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
            c2 += a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
            c3 += a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
        }
        workgroupBarrier();
    }
    if (!t.valid) {
        return;
    }
    let m0 = t.m0 + ty * 4u;
    let n0 = t.n0 + tx * 4u;
    store_row(m0, n0, c0, dims);
    store_row(m0 + 1u, n0, c1, dims);
    store_row(m0 + 2u, n0, c2, dims);
    store_row(m0 + 3u, n0, c3, dims);
}

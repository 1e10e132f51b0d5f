// ---- Shared by the GEMM cores: which output tile and K range a workgroup computes ----

// Which K chunk this workgroup sums (split-K); read by the op's store().
var<private> split_index: u32;

struct GemmTile {
    m0: u32, // first row of the tile
    n0: u32, // first column of the tile
    k_begin: u32,
    k_end: u32,
    valid: bool, // false for the spare workgroups of a grid split over x and y
}

// Workgroups enumerate (K chunk, row tile, column tile) of a `dims` = (M, N, K) GEMM
// with tm × tn tiles; the K chunk is the op's gemm_k_chunk() (K unless split).
fn gemm_tile(wid: vec3<u32>, nwg: vec3<u32>, dims: vec3<u32>, tm: u32, tn: u32) -> GemmTile {
    let tiles_n = (dims.y + tn - 1u) / tn;
    let tiles = ((dims.x + tm - 1u) / tm) * tiles_n;
    let chunk = gemm_k_chunk();
    let splits = max((dims.z + chunk - 1u) / chunk, 1u);
    let linear = wid.x + wid.y * nwg.x;
    let tile = linear % tiles;
    split_index = linear / tiles;
    let k_begin = split_index * chunk;
    return GemmTile(
        (tile / tiles_n) * tm,
        (tile % tiles_n) * tn,
        k_begin,
        min(dims.z, k_begin + chunk),
        linear < tiles * splits,
    );
}

// The rows a lane of the subgroup cores loads from A: lane, 8 + lane, 16 + lane and
// 24 + lane of the tile starting at row m0 (clamped to the last row; their results are
// never stored). The lanes share them through subgroupBroadcast.
fn lane_rows(m0: u32, lane: u32, dims: vec3<u32>) -> vec4<u32> {
    return min(vec4<u32>(m0 + lane) + vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(dims.x - 1u));
}

// Stores columns n0 .. n0+4 of row m, skipping what lies outside the `dims` = (M, N, K)
// output (the portable and tiled cores' 4×4 blocks).
fn store_row(m: u32, n0: u32, v: vec4<f32>, dims: vec3<u32>) {
    if (m >= dims.x) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < dims.y) {
            store(m, n0 + j, v[j]);
        }
    }
}

// The subgroup cores' epilogue: their 32 rows × 2 vec4 block leaves one row at a time
// through acc[0] and acc[1], every other row moving up one place. The indices stay
// constant, so the block stays in registers; 32 unrolled copies of the op's store() (each
// with per-lane loads and stores) made those cores the most expensive pipelines to compile
// on lavapipe (7.5 s → 0.4 s on Mesa 22.3, 50 s → 0.9 s on Mesa 25.0).
fn shift_rows(acc: ptr<function, array<vec4<f32>, 64>>) {
    (*acc)[0] = (*acc)[2]; (*acc)[1] = (*acc)[3]; (*acc)[2] = (*acc)[4]; (*acc)[3] = (*acc)[5];
    (*acc)[4] = (*acc)[6]; (*acc)[5] = (*acc)[7]; (*acc)[6] = (*acc)[8]; (*acc)[7] = (*acc)[9];
    (*acc)[8] = (*acc)[10]; (*acc)[9] = (*acc)[11]; (*acc)[10] = (*acc)[12]; (*acc)[11] = (*acc)[13];
    (*acc)[12] = (*acc)[14]; (*acc)[13] = (*acc)[15]; (*acc)[14] = (*acc)[16]; (*acc)[15] = (*acc)[17];
    (*acc)[16] = (*acc)[18]; (*acc)[17] = (*acc)[19]; (*acc)[18] = (*acc)[20]; (*acc)[19] = (*acc)[21];
    (*acc)[20] = (*acc)[22]; (*acc)[21] = (*acc)[23]; (*acc)[22] = (*acc)[24]; (*acc)[23] = (*acc)[25];
    (*acc)[24] = (*acc)[26]; (*acc)[25] = (*acc)[27]; (*acc)[26] = (*acc)[28]; (*acc)[27] = (*acc)[29];
    (*acc)[28] = (*acc)[30]; (*acc)[29] = (*acc)[31]; (*acc)[30] = (*acc)[32]; (*acc)[31] = (*acc)[33];
    (*acc)[32] = (*acc)[34]; (*acc)[33] = (*acc)[35]; (*acc)[34] = (*acc)[36]; (*acc)[35] = (*acc)[37];
    (*acc)[36] = (*acc)[38]; (*acc)[37] = (*acc)[39]; (*acc)[38] = (*acc)[40]; (*acc)[39] = (*acc)[41];
    (*acc)[40] = (*acc)[42]; (*acc)[41] = (*acc)[43]; (*acc)[42] = (*acc)[44]; (*acc)[43] = (*acc)[45];
    (*acc)[44] = (*acc)[46]; (*acc)[45] = (*acc)[47]; (*acc)[46] = (*acc)[48]; (*acc)[47] = (*acc)[49];
    (*acc)[48] = (*acc)[50]; (*acc)[49] = (*acc)[51]; (*acc)[50] = (*acc)[52]; (*acc)[51] = (*acc)[53];
    (*acc)[52] = (*acc)[54]; (*acc)[53] = (*acc)[55]; (*acc)[54] = (*acc)[56]; (*acc)[55] = (*acc)[57];
    (*acc)[56] = (*acc)[58]; (*acc)[57] = (*acc)[59]; (*acc)[58] = (*acc)[60]; (*acc)[59] = (*acc)[61];
    (*acc)[60] = (*acc)[62]; (*acc)[61] = (*acc)[63];
}

// The same for gemm_subgroup_n32.wgsl's 32 rows × 1 vec4.
fn shift_rows_by_one(acc: ptr<function, array<vec4<f32>, 32>>) {
    (*acc)[0] = (*acc)[1]; (*acc)[1] = (*acc)[2]; (*acc)[2] = (*acc)[3]; (*acc)[3] = (*acc)[4];
    (*acc)[4] = (*acc)[5]; (*acc)[5] = (*acc)[6]; (*acc)[6] = (*acc)[7]; (*acc)[7] = (*acc)[8];
    (*acc)[8] = (*acc)[9]; (*acc)[9] = (*acc)[10]; (*acc)[10] = (*acc)[11]; (*acc)[11] = (*acc)[12];
    (*acc)[12] = (*acc)[13]; (*acc)[13] = (*acc)[14]; (*acc)[14] = (*acc)[15]; (*acc)[15] = (*acc)[16];
    (*acc)[16] = (*acc)[17]; (*acc)[17] = (*acc)[18]; (*acc)[18] = (*acc)[19]; (*acc)[19] = (*acc)[20];
    (*acc)[20] = (*acc)[21]; (*acc)[21] = (*acc)[22]; (*acc)[22] = (*acc)[23]; (*acc)[23] = (*acc)[24];
    (*acc)[24] = (*acc)[25]; (*acc)[25] = (*acc)[26]; (*acc)[26] = (*acc)[27]; (*acc)[27] = (*acc)[28];
    (*acc)[28] = (*acc)[29]; (*acc)[29] = (*acc)[30]; (*acc)[30] = (*acc)[31];
}

// Elements o .. o+3 of the eight in the consecutive texels t0, t1 (o < 4): a vec4 of four
// contiguous elements at any offset, for the unaligned loaders, in two texel reads and
// selects (a branch between a vec4 and a scalar path would compile both).
fn blend4(t0: vec4<f32>, t1: vec4<f32>, o: u32) -> vec4<f32> {
    var r = t0;
    r = select(r, vec4<f32>(t0.yzw, t1.x), o == 1u);
    r = select(r, vec4<f32>(t0.zw, t1.xy), o == 2u);
    r = select(r, vec4<f32>(t0.w, t1.xyz), o == 3u);
    return r;
}

// True for the lanes j of (i + j < end).
fn below4(i: u32, end: u32) -> vec4<bool> {
    return vec4<u32>(i, i + 1u, i + 2u, i + 3u) < vec4<u32>(end);
}

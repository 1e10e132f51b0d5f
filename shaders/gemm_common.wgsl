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

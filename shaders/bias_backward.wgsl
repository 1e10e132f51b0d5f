// Bias gradient = column sums of dout[rows, cols] (dense: rows = batch; conv: rows =
// batch·OH·OW), in two passes: this kernel sums chunks of rows into partial[chunk, cols],
// split_k_reduce adds the chunks. Each invocation owns a vec4 of columns (when cols % 4
// == 0) of one chunk, so neighbouring invocations read neighbouring memory.

struct Params {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> partial: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    let lanes = select(1u, 4u, (p.cols & 3u) == 0u);
    let groups = p.cols / lanes;
    let chunks = (p.rows + p.chunk_rows - 1u) / p.chunk_rows;
    if (i >= groups * chunks) {
        return;
    }
    let chunk = i / groups;
    let c = (i % groups) * lanes;
    let r_end = min(p.rows, (chunk + 1u) * p.chunk_rows);
    let o = chunk * p.cols + c;
    if ((o >> 2u) >= arrayLength(&partial)) {
        return;
    }
    if (lanes == 4u) {
        var s = vec4<f32>(0.0);
        for (var r = chunk * p.chunk_rows; r < r_end; r++) {
            s += dout[(r * p.cols + c) >> 2u];
        }
        partial[o >> 2u] = s;
        return;
    }
    var s = 0.0;
    for (var r = chunk * p.chunk_rows; r < r_end; r++) {
        let j = r * p.cols + c;
        s += dout[j >> 2u][j & 3u];
    }
    partial[o >> 2u][o & 3u] = s;
}

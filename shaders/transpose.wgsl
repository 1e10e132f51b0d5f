// Batched transpose of the last two axes: out[b, c, r] = inp[b, r, c]. Turns a conv kernel
// [kh, kw, ci, co] into [kh, kw, co, ci] for the input-gradient GEMM, and a dense operand
// into the row-major layout the GEMM cores read.
//
// Each invocation moves one 4×4 block: four vec4 loads (one per input row) and four vec4
// stores (one per output row) when rows and cols are multiples of 4, else element by
// element. On lavapipe every load or store instruction is a per-lane loop, so whole vec4s
// cost a quarter of scalars (and the parameter copy is paid once per 16 elements).

struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
// Tensors are allocated in whole vec4s, so both views cover every element.
@group(0) @binding(1) var<storage, read> inp: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

fn inp_at(i: u32) -> f32 {
    return inp[i >> 2u][i & 3u];
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let block_rows = (p.rows + 3u) / 4u;
    let block_cols = (p.cols + 3u) / 4u;
    let per_batch = block_rows * block_cols;
    // Consecutive invocations take consecutive blocks along a row, so a subgroup's loads
    // are contiguous. (Workgroups of 8×8 blocks, for whole written lines, were slower.)
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= p.batch * per_batch) {
        return;
    }
    let b_rem = divmod(i, per_batch);
    let r_c = divmod(b_rem.y, block_cols);
    let base = b_rem.x * p.rows * p.cols; // first element of this batch, in and out
    let r0 = r_c.x * 4u;
    let c0 = r_c.y * 4u;
    if ((p.rows & 3u) == 0u && (p.cols & 3u) == 0u) {
        // Whole blocks, no edges.
        let at = base + r0 * p.cols + c0;
        let v0 = inp[at >> 2u];
        let v1 = inp[(at + p.cols) >> 2u];
        let v2 = inp[(at + 2u * p.cols) >> 2u];
        let v3 = inp[(at + 3u * p.cols) >> 2u];
        let o = (base + c0 * p.rows + r0) >> 2u;
        let s = p.rows >> 2u;
        if (o + 3u * s >= arrayLength(&out)) {
            return; // cannot happen for a buffer of batch·rows·cols elements
        }
        out[o] = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
        out[o + s] = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
        out[o + 2u * s] = vec4<f32>(v0.z, v1.z, v2.z, v3.z);
        out[o + 3u * s] = vec4<f32>(v0.w, v1.w, v2.w, v3.w);
        return;
    }
    // The other shapes in loops whose trip counts NIR cannot see, so that the code holds a
    // few loads and stores instead of sixteen of each (their per-lane copies were most of
    // this kernel's compile time on lavapipe: 0.36 -> 0.13 s on Mesa 25.0).
    let nc = min(4u, p.cols - c0);
    if ((p.rows & 3u) == 0u) {
        // Whole output vec4s (a dense kernel [n_in, units] with units = 10, say): for each
        // column, the four rows' elements.
        for (var q = 0u; q < nc; q++) {
            let at = base + r0 * p.cols + c0 + q;
            let col = vec4<f32>(inp_at(at), inp_at(at + p.cols), inp_at(at + 2u * p.cols), inp_at(at + 3u * p.cols));
            let o = (base + (c0 + q) * p.rows + r0) >> 2u;
            if (o < arrayLength(&out)) {
                out[o] = col;
            }
        }
        return;
    }
    let nr = min(4u, p.rows - r0);
    for (var j = 0u; j < nr; j++) {
        for (var q = 0u; q < nc; q++) {
            let o = base + (c0 + q) * p.rows + r0 + j;
            if ((o >> 2u) < arrayLength(&out)) {
                out[o >> 2u][o & 3u] = inp_at(base + (r0 + j) * p.cols + c0 + q);
            }
        }
    }
}

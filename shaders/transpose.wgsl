// Batched transpose of the last two axes: out[b, c, r] = inp[b, r, c]. Turns a conv kernel
// [kh, kw, ci, co] into [kh, kw, co, ci] for the input-gradient GEMM, and a dense operand
// into the row-major layout the GEMM cores read.
//
// Each invocation moves one 4×4 block: four vec4 loads (one per input row) when cols is
// a multiple of 4, four vec4 stores (one per output row) when rows is. On lavapipe every
// load or store instruction is a per-lane loop, so whole vec4s cost a quarter of scalars
// (and the parameter copy is paid once per 16 elements, not per element).

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
    // v[j] = input row r0 + j, columns c0 .. c0+4 (zero past the edges).
    var v: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j++) {
        let r = r0 + j;
        if (r < p.rows) {
            let at = base + r * p.cols + c0;
            if ((p.cols & 3u) == 0u) {
                v[j] = inp[at >> 2u];
            } else {
                for (var q = 0u; q < 4u; q++) {
                    if (c0 + q < p.cols) {
                        v[j][q] = inp_at(at + q);
                    }
                }
            }
        }
    }
    // Output row c0 + q holds column q of the block: rows r0 .. r0+4.
    for (var q = 0u; q < 4u; q++) {
        let c = c0 + q;
        if (c >= p.cols) {
            break;
        }
        let col = vec4<f32>(v[0][q], v[1][q], v[2][q], v[3][q]);
        let at = base + c * p.rows + r0;
        if ((p.rows & 3u) == 0u) {
            if ((at >> 2u) < arrayLength(&out)) {
                out[at >> 2u] = col;
            }
        } else {
            for (var j = 0u; j < 4u; j++) {
                let o = at + j;
                if (r0 + j < p.rows && (o >> 2u) < arrayLength(&out)) {
                    out[o >> 2u][o & 3u] = col[j];
                }
            }
        }
    }
}

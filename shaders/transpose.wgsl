// Batched transpose of the last two axes: out[out_start + b, c, r] = inp[src(b), r, c].
// Turns a conv kernel [kh, kw, ci, co] into [kh, kw, co, ci] for the input-gradient GEMM
// (src(b) = in_start + (b / inner)·step_outer + (b % inner)·step_inner picks the taps of
// one phase of a strided convolution), and a dense operand into the row-major layout the
// GEMM cores read.
//
// Each invocation moves one 4×4 block: a vec4 load per input row and a vec4 store per
// output row where rows and cols are multiples of 4, else element by element. On
// lavapipe every load or store instruction is a per-lane loop, so whole vec4s cost a
// quarter of scalars (and the parameter copy is paid once per 16 elements). Whole blocks
// (the large transposes: a dense layer's input for dW) are unrolled, four loads and four
// stores; every other shape goes through loops (0.29 → 0.16 s of compile on Mesa 25.0;
// as loops, whole blocks ran 30% slower).

struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    inner: u32,
    in_start: u32,
    step_outer: u32,
    step_inner: u32,
    out_start: u32,
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
    // First elements of this matrix, in and out.
    let b_outer = divmod(b_rem.x, p.inner);
    let matrix = p.rows * p.cols;
    let in_base = (p.in_start + b_outer.x * p.step_outer + b_outer.y * p.step_inner) * matrix;
    let base = (p.out_start + b_rem.x) * matrix;
    let r0 = r_c.x * 4u;
    let c0 = r_c.y * 4u;
    if ((p.rows & 3u) == 0u && (p.cols & 3u) == 0u) {
        // Whole blocks, no edges.
        let at = in_base + r0 * p.cols + c0;
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
    // The other shapes walk rows and columns in loops whose trip counts NIR cannot see,
    // through a block held in registers, so that the code holds one load and one store of
    // each kind: unrolled, their per-lane accesses were most of this kernel's compile.
    let nr = min(4u, p.rows - r0);
    let nc = min(4u, p.cols - c0);
    // b0..b3 are the block's columns, which are the output's rows: b_q[j] = inp[r0 + j, c0 + q].
    // (Selects, not a dynamically indexed private array, which Mesa 22.3 compiled slowly.)
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    let whole_rows = (p.cols & 3u) == 0u;
    for (var j = 0u; j < nr; j++) {
        let at = in_base + (r0 + j) * p.cols + c0;
        var v = vec4<f32>(0.0);
        if (whole_rows) {
            v = inp[at >> 2u];
        } else {
            for (var q = 0u; q < nc; q++) {
                v[q] = inp_at(at + q);
            }
        }
        let lane = vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(j);
        b0 = select(b0, vec4<f32>(v.x), lane);
        b1 = select(b1, vec4<f32>(v.y), lane);
        b2 = select(b2, vec4<f32>(v.z), lane);
        b3 = select(b3, vec4<f32>(v.w), lane);
    }
    let whole_cols = (p.rows & 3u) == 0u;
    for (var q = 0u; q < nc; q++) {
        let col = select(select(select(b0, b1, q == 1u), b2, q == 2u), b3, q == 3u);
        let o = base + (c0 + q) * p.rows + r0;
        if (whole_cols) {
            if ((o >> 2u) < arrayLength(&out)) {
                out[o >> 2u] = col;
            }
        } else {
            for (var j = 0u; j < nr; j++) {
                let e = o + j;
                if ((e >> 2u) < arrayLength(&out)) {
                    out[e >> 2u][e & 3u] = col[j];
                }
            }
        }
    }
}

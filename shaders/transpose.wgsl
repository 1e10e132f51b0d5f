// Batched transpose of the last two axes: out[b, c, r] = inp[b, r, c]. Turns a conv kernel
// [kh, kw, ci, co] into [kh, kw, co, ci] for the input-gradient GEMM.

struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid; // index into out
    let per = p.rows * p.cols;
    if (i >= p.batch * per || i >= arrayLength(&out)) {
        return;
    }
    let b_rem = divmod(i, per);
    let c_r = divmod(b_rem.y, p.rows);
    let b = b_rem.x;
    let c = c_r.x;
    let r = c_r.y;
    out[i] = inp[b * per + r * p.cols + c];
}

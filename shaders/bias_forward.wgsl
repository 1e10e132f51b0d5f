// Bias, in place: out[r, c] += bias[c] over out[rows, cols] (a transposed convolution's
// bias, after the GEMM that has no bias of its own). One invocation per element.

struct Params {
    rows: u32,
    cols: u32,
    chunk_rows: u32, // unused here (bias_backward's)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.rows * p.cols || i >= arrayLength(&out)) {
        return;
    }
    out[i] += bias[divmod(i, p.cols).y];
}

// Row-wise softmax (inference), stable: subtract the row max before exp.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let r = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (r >= p.rows || (r + 1u) * p.cols > arrayLength(&probs)) {
        return;
    }
    let base = r * p.cols;
    var mx = -3.0e38;
    for (var j = 0u; j < p.cols; j++) {
        mx = max(mx, logits[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let e = exp(logits[base + j] - mx);
        probs[base + j] = e;
        sum += e;
    }
    for (var j = 0u; j < p.cols; j++) {
        probs[base + j] = probs[base + j] / sum;
    }
}

// Element-wise loss backward (see loss_common.wgsl): dpred = dloss/dy / (valid·elements),
// the gradient of the batch's mean; 0 for the rows past the valid ones. One invocation
// per element.

@group(0) @binding(2) var<storage, read> pred: array<f32>;
@group(0) @binding(3) var<storage, read> truth: array<f32>;
@group(0) @binding(4) var<storage, read_write> dpred: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    r = shape;
    let k = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (k >= r.rows * r.cols || k >= arrayLength(&dpred) || k >= arrayLength(&pred) || k >= arrayLength(&truth)) {
        return;
    }
    let valid = divmod(k, r.cols).x < r.valid;
    let n = f32(max(r.valid, 1u)) * f32(r.cols);
    dpred[k] = select(0.0, slope(pred[k], truth[k]) / n, valid);
}

// Element-wise loss forward (see loss_common.wgsl): per valid sample, the mean of its
// elements' losses and of its metric; 0 for the batch buffer's rows past the valid ones.
// One invocation per sample.

@group(0) @binding(2) var<storage, read> pred: array<f32>;
@group(0) @binding(3) var<storage, read> truth: array<f32>;
@group(0) @binding(4) var<storage, read_write> sample_loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> sample_metric: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    r = shape;
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    let end = (i + 1u) * r.cols;
    if (i >= r.rows || i >= arrayLength(&sample_loss) || i >= arrayLength(&sample_metric)
        || end > arrayLength(&pred) || end > arrayLength(&truth)) {
        return;
    }
    var l = 0.0;
    var m = 0.0;
    if (i < r.valid) {
        for (var k = i * r.cols; k < end; k++) {
            l += loss(pred[k], truth[k]);
            m += metric(pred[k], truth[k]);
        }
    }
    sample_loss[i] = l / f32(r.cols);
    sample_metric[i] = m / f32(r.cols);
}

// Fused softmax + categorical cross-entropy forward (see soft_xent_common.wgsl): per row,
// the probabilities, the loss and whether argmax p == argmax t; rows at or past `valid`
// get loss and metric 0. One invocation per row.

@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> truth: array<f32>;
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_hit: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    r = shape;
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    let end = (i + 1u) * r.cols;
    if (i >= r.rows || i >= arrayLength(&row_loss) || i >= arrayLength(&row_hit)
        || end > arrayLength(&probs) || end > arrayLength(&truth) || end > arrayLength(&logits)) {
        return;
    }
    let base = i * r.cols;
    var mx = -3.0e38;
    var best_t = 0u;
    for (var j = 0u; j < r.cols; j++) {
        mx = max(mx, logits[base + j]);
        best_t = select(best_t, j, truth[base + j] > truth[base + best_t]);
    }
    var sum = 0.0;
    for (var j = 0u; j < r.cols; j++) {
        let e = exp(logits[base + j] - mx);
        probs[base + j] = e;
        sum += e;
    }
    let lse = log(sum) + mx;
    var l = 0.0;
    var best_p = 0u;
    for (var j = 0u; j < r.cols; j++) {
        probs[base + j] = probs[base + j] / sum;
        best_p = select(best_p, j, probs[base + j] > probs[base + best_p]);
        let t = truth[base + j] * (1.0 - p.smoothing) + p.smoothing / f32(r.cols);
        l += t * (lse - logits[base + j]);
    }
    let live = i < r.valid;
    row_loss[i] = select(0.0, l, live);
    row_hit[i] = select(0.0, select(0.0, 1.0, best_p == best_t), live);
}

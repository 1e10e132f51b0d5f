// BatchNormalization forward over x[rows, C4] (rows = batch·H·W after a conv, batch after
// a dense layer; see batchnorm_common.wgsl).
// Training: the batch mean and biased variance over the `valid` rows (a partial last
// batch counts only its samples), kept in `saved` for the backward pass, and
//   moving ← momentum·moving + (1 − momentum)·batch   (Keras)
// Inference: the moving statistics. Then y = γ·(x − mean)/√(var + ε) + β on every row.
// Sums are shifted by the first row (Σ(x − x₀), Σ(x − x₀)²), which keeps the variance
// accurate in f32 when the mean is large.

@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> gamma: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> beta: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> moving_mean: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> moving_var: array<vec4<f32>>;
// [mean (C4), 1/√(var + ε) (C4)] of the last training batch.
@group(0) @binding(7) var<storage, read_write> saved: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let p = params; // one storage read (on lavapipe each is a per-lane loop)
    let cq = (p.channels + 3u) >> 2u;
    let q = wid.x + wid.y * nwg.x;
    // A spare workgroup of a 2-D grid reads quad 0, loops over no rows and stores
    // nothing. (No early return: the barriers must stay in uniform control flow.)
    let live = q < cq;
    let qc = select(0u, q, live);
    let training = p.training == 1u;
    let valid = select(0u, p.valid, live && training);
    let x0 = x[qc];
    var s = vec4<f32>(0.0);
    var ss = vec4<f32>(0.0);
    for (var r = lid; r < valid; r += 64u) {
        let d = x[r * cq + qc] - x0;
        s += d;
        ss += d * d;
    }
    part_a[lid] = s;
    part_b[lid] = ss;
    // Every lane reads the moving statistics before the barriers; lane 0 alone rewrites
    // them after them.
    let mm = moving_mean[qc];
    let mv = moving_var[qc];
    let sums = workgroup_sums(lid);
    let n = f32(max(p.valid, 1u));
    let dm = sums[0] / n;
    let var_b = max(sums[1] / n - dm * dm, vec4<f32>(0.0));
    let mean_b = x0 + dm;
    let inv_b = inverseSqrt(var_b + vec4<f32>(p.epsilon));
    let mean = select(mm, mean_b, training);
    let inv = select(inverseSqrt(mv + vec4<f32>(p.epsilon)), inv_b, training);
    // Lane 0 stores the statistics the backward pass reads: in training the batch's (and
    // the moving ones updated); a frozen layer (training 2) the moving ones it used, k = 0
    // writing them back unchanged. One store block: a second one cost ~80 ms of compile
    // on Mesa 25.0.
    if (lid == 0u && (valid > 0u || (live && p.training == 2u))) {
        let k = select(0.0, 1.0 - p.momentum, training);
        moving_mean[q] = mm + k * (mean_b - mm);
        moving_var[q] = mv + k * (var_b - mv);
        saved[q] = mean;
        saved[cq + q] = inv;
    }
    let scale = inv * gamma[qc];
    let shift = beta[qc] - mean * scale;
    let rows = select(0u, p.rows, live);
    for (var r = lid; r < rows; r += 64u) {
        let i = r * cq + q;
        y[i] = x[i] * scale + shift;
    }
}

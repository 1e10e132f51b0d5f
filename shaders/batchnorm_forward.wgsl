// BatchNormalization forward over x[rows, C] (rows = batch·H·W after a conv, batch after a
// dense layer), one workgroup per quad of channels, 64 invocations striding over rows.
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
// [mean (C), 1/√(var + ε) (C)] of the last training batch.
@group(0) @binding(7) var<storage, read_write> saved: array<f32>;

var<workgroup> part_s: array<vec4<f32>, 64>;
var<workgroup> part_ss: array<vec4<f32>, 64>;
var<workgroup> stats: array<vec4<f32>, 2>; // mean, 1/√(var + ε)

fn y_store(r: u32, c0: u32, v: vec4<f32>) {
    let i = r * p.channels + c0;
    if (quad_aligned()) {
        if ((i >> 2u) < arrayLength(&y)) {
            y[i >> 2u] = v;
        }
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.channels && ((i + j) >> 2u) < arrayLength(&y)) {
            y[(i + j) >> 2u][(i + j) & 3u] = v[j];
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let c0 = (wid.x + wid.y * nwg.x) * 4u;
    let q = c0 >> 2u;
    // No early return and no branch around the barriers: WGSL wants them in uniform control
    // flow, and p (a private copy) is not uniform to it. A spare workgroup loops zero times.
    let in_range = c0 < p.channels;
    let training = p.training != 0u;
    let x0 = select(vec4<f32>(0.0), x_quad(0u, c0), in_range && p.valid > 0u);
    var s = vec4<f32>(0.0);
    var ss = vec4<f32>(0.0);
    let valid = select(0u, p.valid, in_range && training);
    for (var r = lid; r < valid; r += 64u) {
        let d = x_quad(r, c0) - x0;
        s += d;
        ss += d * d;
    }
    part_s[lid] = s;
    part_ss[lid] = ss;
    workgroupBarrier();
    if (lid == 0u && in_range && training) {
        // One invocation adds the 64 partial sums (a loop NIR does not unroll; a tree
        // reduction compiles to six unrolled rounds on lavapipe).
        var ts = vec4<f32>(0.0);
        var tss = vec4<f32>(0.0);
        for (var i = 0u; i < 64u; i++) {
            ts += part_s[i];
            tss += part_ss[i];
        }
        let n = f32(max(p.valid, 1u));
        let dm = ts / n;
        let var_b = max(tss / n - dm * dm, vec4<f32>(0.0));
        let mean = x0 + dm;
        stats[0] = mean;
        stats[1] = inverseSqrt(var_b + vec4<f32>(p.epsilon));
        let k = 1.0 - p.momentum;
        let keep = quad_mask(c0);
        if (q < arrayLength(&moving_mean) && q < arrayLength(&moving_var)) {
            let mm = moving_mean[q];
            let mv = moving_var[q];
            moving_mean[q] = select(mm, mm + k * (mean - mm), keep);
            moving_var[q] = select(mv, mv + k * (var_b - mv), keep);
        }
        for (var j = 0u; j < 4u; j++) {
            if (c0 + j < p.channels && p.channels + c0 + j < arrayLength(&saved)) {
                saved[c0 + j] = mean[j];
                saved[p.channels + c0 + j] = stats[1][j];
            }
        }
    }
    if (lid == 0u && in_range && !training && q < arrayLength(&moving_mean) && q < arrayLength(&moving_var)) {
        stats[0] = moving_mean[q];
        stats[1] = inverseSqrt(moving_var[q] + vec4<f32>(p.epsilon));
    }
    workgroupBarrier();
    if (!in_range || q >= arrayLength(&gamma) || q >= arrayLength(&beta)) {
        return;
    }
    let scale = stats[1] * gamma[q];
    let shift = beta[q] - stats[0] * scale;
    for (var r = lid; r < p.rows; r += 64u) {
        y_store(r, c0, x_quad(r, c0) * scale + shift);
    }
}

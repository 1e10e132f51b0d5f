// LayerNormalization forward (see layernorm_common.wgsl): mean, then the variance about
// it (two passes: no cancellation), then the normalised row.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let r = row_id(wid, nwg, lid);
    if (r >= p.rows || (r + 1u) * p.cols > arrayLength(&y) || 2u * r + 1u >= arrayLength(&saved)) {
        return;
    }
    let base = r * p.cols;
    var sum = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        sum += x[base + c];
    }
    let mean = sum / f32(p.cols);
    var sq = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let d = x[base + c] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(sq / f32(p.cols) + p.epsilon);
    for (var c = 0u; c < p.cols; c++) {
        y[base + c] = (x[base + c] - mean) * inv * gamma[c] + beta[c];
    }
    saved[2u * r] = mean;
    saved[2u * r + 1u] = inv;
}

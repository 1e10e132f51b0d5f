// LayerNormalization backward, per row (see layernorm_common.wgsl): with x̂ = (x − mean)·inv
// and g = dy·gamma, dx (+)= inv·(g − mean(g) − x̂·mean(g·x̂)). It also writes
// prod[r, c] = dy·x̂, whose column sums (bias_backward) are dgamma; dbeta is dy's.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> saved: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> prod: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let r = row_id(wid, nwg, lid);
    let end = (r + 1u) * p.cols;
    if (r >= p.rows || end > arrayLength(&dx) || end > arrayLength(&prod) || end > arrayLength(&dy)) {
        return;
    }
    let base = r * p.cols;
    let mean = saved[2u * r];
    let inv = saved[2u * r + 1u];
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let xh = (x[base + c] - mean) * inv;
        let g = dy[base + c] * gamma[c];
        sum_g += g;
        sum_gx += g * xh;
        prod[base + c] = dy[base + c] * xh;
    }
    let n = f32(p.cols);
    let mg = sum_g / n;
    let mgx = sum_gx / n;
    for (var c = 0u; c < p.cols; c++) {
        let xh = (x[base + c] - mean) * inv;
        var v = inv * (dy[base + c] * gamma[c] - mg - xh * mgx);
        if (p.accumulate != 0u) {
            v += dx[base + c];
        }
        dx[base + c] = v;
    }
}

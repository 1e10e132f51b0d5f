// BatchNormalization backward (training mode) over x[rows, C4] (see
// batchnorm_common.wgsl), over the `valid` rows with the batch statistics the forward
// pass saved:
//   x̂ = (x − mean)·inv,  dβ = Σ dy,  dγ = Σ dy·x̂,
//   dx = γ·inv·(dy − dβ/n − x̂·dγ/n)      (n valid rows; rows past them get dx = 0, so
//                                          padding samples add nothing upstream)
// dγ and dβ are written, not accumulated, as the graph's other gradient kernels do.

@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> gamma: array<vec4<f32>>;
// [mean (C4), 1/√(var + ε) (C4)]
@group(0) @binding(5) var<storage, read> saved: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> dgamma: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dbeta: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let p = params;
    let cq = (p.channels + 3u) >> 2u;
    let q = wid.x + wid.y * nwg.x;
    // Spare workgroups as in batchnorm_forward.wgsl.
    let live = q < cq;
    let qc = select(0u, q, live);
    let mean = saved[qc];
    let inv = saved[cq + qc];
    let valid = select(0u, p.valid, live);
    var sd = vec4<f32>(0.0);
    var sdx = vec4<f32>(0.0);
    for (var r = lid; r < valid; r += 64u) {
        let i = r * cq + qc;
        let d = dy[i];
        sd += d;
        sdx += d * (x[i] - mean) * inv;
    }
    part_a[lid] = sd;
    part_b[lid] = sdx;
    let sums = workgroup_sums(lid);
    if (lid == 0u && live) {
        dbeta[q] = sums[0];
        dgamma[q] = sums[1];
    }
    // Frozen (training 2: fixed statistics): no gradient through the mean and variance.
    let n = f32(max(p.valid, 1u));
    let mean_d = select(vec4<f32>(0.0), sums[0] / n, p.training == 1u);
    let mean_dx = select(vec4<f32>(0.0), sums[1] / n, p.training == 1u);
    let k = gamma[qc] * inv;
    let rows = select(0u, p.rows, live);
    for (var r = lid; r < rows; r += 64u) {
        let i = r * cq + q;
        let xh = (x[i] - mean) * inv;
        let g = k * (dy[i] - mean_d - xh * mean_dx);
        dx[i] = select(vec4<f32>(0.0), g, vec4<bool>(r < p.valid));
    }
}

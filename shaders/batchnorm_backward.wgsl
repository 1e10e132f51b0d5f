// BatchNormalization backward (training mode), one workgroup per quad of channels, over
// the `valid` rows with the batch statistics the forward pass saved:
//   x̂ = (x − mean)·inv,  dβ = Σ dy,  dγ = Σ dy·x̂,
//   dx = γ·inv·(dy − dβ/n − x̂·dγ/n)      (n valid rows; rows past them get dx = 0, so
//                                          padding samples add nothing upstream)
// dγ and dβ are written, not accumulated, as the graph's other gradient kernels do.

@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> gamma: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> saved: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgamma: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dbeta: array<vec4<f32>>;

var<workgroup> part_d: array<vec4<f32>, 64>;
var<workgroup> part_dx: array<vec4<f32>, 64>;
var<workgroup> sums: array<vec4<f32>, 2>; // Σ dy, Σ dy·x̂

fn dy_quad(r: u32, c0: u32) -> vec4<f32> {
    let i = r * p.channels + c0;
    if (quad_aligned()) {
        return dy[i >> 2u];
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.channels) {
            v[j] = dy[(i + j) >> 2u][(i + j) & 3u];
        }
    }
    return v;
}

fn dx_store(r: u32, c0: u32, v: vec4<f32>) {
    let i = r * p.channels + c0;
    if (quad_aligned()) {
        if ((i >> 2u) < arrayLength(&dx)) {
            dx[i >> 2u] = v;
        }
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.channels && ((i + j) >> 2u) < arrayLength(&dx)) {
            dx[(i + j) >> 2u][(i + j) & 3u] = v[j];
        }
    }
}

// saved[c] (mean) or saved[C + c] (inv) for the quad, zero past C.
fn saved_quad(base: u32, c0: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.channels && base + c0 + j < arrayLength(&saved)) {
            v[j] = saved[base + c0 + j];
        }
    }
    return v;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let c0 = (wid.x + wid.y * nwg.x) * 4u;
    let q = c0 >> 2u;
    // No early return before the barriers (see batchnorm_forward.wgsl).
    let in_range = c0 < p.channels;
    let mean = saved_quad(0u, c0);
    let inv = saved_quad(p.channels, c0);
    var sd = vec4<f32>(0.0);
    var sdx = vec4<f32>(0.0);
    let valid = select(0u, p.valid, in_range);
    for (var r = lid; r < valid; r += 64u) {
        let d = dy_quad(r, c0);
        sd += d;
        sdx += d * (x_quad(r, c0) - mean) * inv;
    }
    part_d[lid] = sd;
    part_dx[lid] = sdx;
    workgroupBarrier();
    if (lid == 0u) {
        var td = vec4<f32>(0.0);
        var tdx = vec4<f32>(0.0);
        for (var i = 0u; i < 64u; i++) {
            td += part_d[i];
            tdx += part_dx[i];
        }
        sums[0] = td;
        sums[1] = tdx;
        if (in_range && q < arrayLength(&dgamma) && q < arrayLength(&dbeta)) {
            let keep = quad_mask(c0);
            dbeta[q] = select(vec4<f32>(0.0), td, keep);
            dgamma[q] = select(vec4<f32>(0.0), tdx, keep);
        }
    }
    workgroupBarrier();
    if (!in_range || q >= arrayLength(&gamma)) {
        return;
    }
    let n = f32(max(p.valid, 1u));
    let mean_d = sums[0] / n;
    let mean_dx = sums[1] / n;
    let k = gamma[q] * inv;
    for (var r = lid; r < p.rows; r += 64u) {
        var g = vec4<f32>(0.0);
        if (r < p.valid) {
            let xh = (x_quad(r, c0) - mean) * inv;
            g = k * (dy_quad(r, c0) - mean_d - xh * mean_dx);
        }
        dx_store(r, c0, g);
    }
}

// Element-wise activation y = f(x). kind: 0 linear, 1 relu, 2 sigmoid, 3 tanh.

struct Params {
    n: u32,
    kind: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.n || i >= arrayLength(&y)) {
        return;
    }
    let v = x[i];
    switch p.kind {
        case 1u: { y[i] = max(v, 0.0); }
        case 2u: { y[i] = 1.0 / (1.0 + exp(-v)); }
        case 3u: { y[i] = tanh(v); }
        default: { y[i] = v; }
    }
}

// Element-wise merge of two same-shape tensors, Keras' merge layers folded pairwise:
// y = f(a, b) · scale, or y += f(a, b) · scale when accumulating (the sum of a tensor's
// gradients from several readers). kind: 0 add, 1 subtract, 2 multiply, 3 maximum,
// 4 minimum, 5 a alone (b unread). One invocation per vec4.

struct Params {
    n: u32,
    kind: u32,
    accumulate: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

fn f(u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    switch p.kind {
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return max(u, v); }
        case 4u: { return min(u, v); }
        case 5u: { return u; }
        default: { return u + v; }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i * 4u >= p.n || i >= arrayLength(&y)) {
        return;
    }
    let v = f(a[i], b[i]) * p.scale;
    if (p.accumulate != 0u) {
        y[i] = y[i] + v;
    } else {
        y[i] = v;
    }
}

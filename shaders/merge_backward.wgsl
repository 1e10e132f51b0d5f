// Gradients of y = f(a, b) · scale (merge_forward): da = dy·scale·∂f/∂a and
// db = dy·scale·∂f/∂b. Maximum (minimum) sends the gradient to a where a ≥ b (a ≤ b),
// ties included, else to b, as TensorFlow's gradient of tf.maximum does. kind as in
// merge_forward (5 is not differentiated here). One invocation per vec4.

struct Params {
    n: u32,
    kind: u32,
    _pad: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
var<private> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> da: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> db: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i * 4u >= p.n || i >= arrayLength(&da) || i >= arrayLength(&db)) {
        return;
    }
    let g = dy[i] * p.scale;
    let zero = vec4<f32>(0.0);
    switch p.kind {
        case 1u: { da[i] = g; db[i] = -g; }
        case 2u: { da[i] = g * b[i]; db[i] = g * a[i]; }
        case 3u: {
            let first = a[i] >= b[i];
            da[i] = select(zero, g, first);
            db[i] = select(g, zero, first);
        }
        case 4u: {
            let first = a[i] <= b[i];
            da[i] = select(zero, g, first);
            db[i] = select(g, zero, first);
        }
        default: { da[i] = g; db[i] = g; }
    }
}

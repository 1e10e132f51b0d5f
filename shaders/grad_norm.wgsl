// The squared L2 norm of one gradient tensor, into norms[slot] (for clipnorm and
// global_clipnorm, before the optimizer update). One workgroup: 256 invocations stride
// over the tensor's vec4s (padding lanes are zero), then a tree sum in workgroup memory —
// a fixed order, so the result is the same every run.

struct Params {
    slot: u32,
    count: u32, // tensors in norms (grad_clip's)
    global: u32, // grad_clip's
    clipnorm: f32, // grad_clip's
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> norms: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    let p = params; // one storage read (on lavapipe each is a per-lane loop)
    var acc = 0.0;
    for (var i = lid; i < arrayLength(&g); i += 256u) {
        let v = g[i];
        acc += dot(v, v);
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (lid < half) {
            part[lid] += part[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u && p.slot < arrayLength(&norms)) {
        norms[p.slot] = part[0];
    }
}

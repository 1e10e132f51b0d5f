// Gated activation backward, in place on the gradient: g *= gate(x) + x·gate'(x), from
// the forward pass's input x (see gated_activation_common.wgsl). One invocation per vec4.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> g: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i * 4u >= p.n || i >= arrayLength(&g)) {
        return;
    }
    g[i] = g[i] * slope(x[i]);
}

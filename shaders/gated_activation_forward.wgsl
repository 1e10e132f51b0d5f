// Gated activation forward: y = x·gate(x) (see gated_activation_common.wgsl). One
// invocation per vec4.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    p = params;
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i * 4u >= p.n || i >= arrayLength(&y)) {
        return;
    }
    let v = x[i];
    y[i] = v * gate(v);
}

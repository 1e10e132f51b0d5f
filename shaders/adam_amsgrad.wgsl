// Adam's amsgrad form (appended to adam_update.wgsl): the step divides by the running
// maximum of the second moment, v̂ ← max(v̂, v), kept in a third state tensor.

@group(0) @binding(5) var<storage, read_write> v_max: array<vec4<f32>>;

fn second_moment(i: u32, v: vec4<f32>) -> vec4<f32> {
    let j = min(i, arrayLength(&v_max) - 1u);
    let m = max(v_max[j], v);
    v_max[j] = m;
    return m;
}

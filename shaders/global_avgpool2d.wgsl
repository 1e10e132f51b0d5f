// Global average pooling, both directions, as one strided sum per output vec4 of channels:
//   out[i] (+)= scale · Σ_{j < count} inp[(i / div)·mul + i % c4 + j·c4]
// forward:  i = (n, c),     div = c4,      mul = hw·c4, count = hw, scale = 1/hw
// backward: i = (n, hw, c), div = hw·c4,   mul = c4,    count = 1,  scale = 1/hw
// (c4: channels / 4; the launcher takes this path for channel counts divisible by 4.) One
// small kernel for both: a cold first step compiles it instead of the windowed pooling's
// two (Mesa 25.0: ~230 ms → ~60 ms).

struct Params {
    outputs: u32, // vec4s written
    c4: u32,
    div: u32,
    mul: u32,
    count: u32,
    scale: f32,
    flags: u32, // 1: add to what out holds
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> inp: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let p = params; // one storage read (on lavapipe each is a per-lane loop)
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= p.outputs || i >= arrayLength(&out)) {
        return;
    }
    var at = divmod(i, p.div).x * p.mul + divmod(i, p.c4).y;
    var s = vec4<f32>(0.0);
    for (var j = 0u; j < p.count; j++) {
        s += inp[at];
        at += p.c4;
    }
    // One store, the accumulation folded in by a select (see avgpool2d_backward.wgsl).
    out[i] = s * p.scale + select(vec4<f32>(0.0), out[i], (p.flags & 1u) != 0u);
}

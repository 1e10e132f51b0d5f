// The layer input x, read by the forward pass and the kernel gradient (binding 1 of
// both), with the channels an output quad reads.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;

// x at input pixel `pix` for the output channels o0 .. o0+3.
fn x_quad(pix: u32, o0: u32) -> vec4<f32> {
    let base = pix * p.in_c;
    if (p.mult == 1u) {
        return x[(base + o0) >> 2u];
    }
    let i = vec4<u32>(base) + in_channels(o0);
    return vec4<f32>(x[i.x >> 2u][i.x & 3u], x[i.y >> 2u][i.y & 3u],
                     x[i.z >> 2u][i.z & 3u], x[i.w >> 2u][i.w & 3u]);
}

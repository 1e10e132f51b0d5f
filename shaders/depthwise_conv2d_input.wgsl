// The layer input x, operand 1 of the forward pass and the kernel gradient, with the
// channels an output quad reads.
// x at input pixel `pix` for the output channels o0 .. o0+3: their groups' input
// channel ci.
fn x_quad(pix: u32, o0: u32, ci: u32) -> vec4<f32> {
    let base = pix * p.in_c;
    if (p.mult == 1u && p.group_in == 1u) {
        return input1_texel((base + o0) >> 2u);
    }
    if ((p.mult & 3u) == 0u) {
        // The quad lies in one group: one element for all four.
        return vec4<f32>(input1_elem(base + ci + o0 / p.mult * p.group_in));
    }
    let i = vec4<u32>(base + ci) + in_channels(o0);
    return vec4<f32>(input1_elem(i.x), input1_elem(i.y), input1_elem(i.z), input1_elem(i.w));
}

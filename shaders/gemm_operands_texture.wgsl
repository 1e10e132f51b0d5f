// ---- GEMM operands at bindings 1 and 2, read from rgba32float textures ----
// Each operand is its storage buffer copied into a texture 4096 texels wide, row after
// row (texel t at (t % 4096, t / 4096)); the launcher records the copies before the
// dispatch. On lavapipe a texel fetch is one vectorised gather, where a storage-buffer load
// with per-lane addresses becomes a loop (Mesa 22) or eight unrolled copies (Mesa 25) of
// scalar loads: the fetches make the GEMM both faster and much cheaper to compile.

@group(0) @binding(1) var input1: texture_2d<f32>;
@group(0) @binding(2) var input2: texture_2d<f32>;

fn input1_texel(t: u32) -> vec4<f32> {
    return textureLoad(input1, vec2<u32>(t & 4095u, t >> 12u), 0);
}

fn input2_texel(t: u32) -> vec4<f32> {
    return textureLoad(input2, vec2<u32>(t & 4095u, t >> 12u), 0);
}

fn input1_elem(i: u32) -> f32 {
    return input1_texel(i >> 2u)[i & 3u];
}

fn input2_elem(i: u32) -> f32 {
    return input2_texel(i >> 2u)[i & 3u];
}

// Elements the operand can hold (a bound for index checks, not its logical length).
fn input1_len() -> u32 {
    let d = textureDimensions(input1);
    return d.x * d.y * 4u;
}

fn input2_len() -> u32 {
    let d = textureDimensions(input2);
    return d.x * d.y * 4u;
}

// Shared by the UpSampling2D passes: parameters, and where output row/column o samples
// its input. Nearest: input o / scale. Bilinear (Keras 3, as jax.image.resize and
// TensorFlow's half-pixel resize): position (o + ½)/scale − ½, clamped to the input, blended
// between its two neighbours.

struct Params {
    n: u32, // elements of the output (forward) or input (backward)
    in_h: u32,
    in_w: u32,
    c: u32,
    scale_h: u32,
    scale_w: u32,
    bilinear: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
// Read once into a private copy: on lavapipe every storage read is a per-lane loop.
var<private> p: Params;

struct Source {
    i0: u32,
    i1: u32,
    frac: f32, // weight of i1; i0 gets 1 − frac
}

fn source(o: u32, scale: u32, len: u32) -> Source {
    if (p.bilinear == 0u) {
        let i = divmod(o, scale).x;
        return Source(i, i, 0.0);
    }
    let s = max((f32(o) + 0.5) / f32(scale) - 0.5, 0.0);
    let i0 = min(u32(floor(s)), len - 1u);
    return Source(i0, min(i0 + 1u, len - 1u), s - f32(i0));
}

// The weight of input index i in output index o.
fn weight(o: u32, i: u32, scale: u32, len: u32) -> f32 {
    let s = source(o, scale, len);
    return select(0.0, 1.0 - s.frac, s.i0 == i) + select(0.0, s.frac, s.i1 == i);
}

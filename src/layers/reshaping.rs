//! Spatial reshaping layers: ZeroPadding2D, Cropping2D and UpSampling2D (Keras 3,
//! channels last).

use crate::ops::upsampling2d::Interpolation;

/// `ZeroPadding2D(padding=(1, 1))`: zero rows and columns around each image. `new(p)`
/// pads every side by `p`; `symmetric(h, w)` and `sides([[top, bottom], [left, right]])`
/// take Keras' other two forms.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ZeroPadding2D {
    /// ((top, bottom), (left, right)).
    pub padding: [[usize; 2]; 2],
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

/// `Cropping2D(cropping=((0, 0), (0, 0)))`: rows and columns cut from each image's
/// edges, in the same three forms as [`ZeroPadding2D`]'s.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cropping2D {
    /// ((top, bottom), (left, right)).
    pub cropping: [[usize; 2]; 2],
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl ZeroPadding2D {
    /// `p` rows or columns on every side.
    pub fn new(p: usize) -> ZeroPadding2D {
        ZeroPadding2D {
            padding: [[p, p], [p, p]],
            input_shape: None,
        }
    }
    /// `h` rows above and below, `w` columns left and right.
    pub fn symmetric(mut self, h: usize, w: usize) -> Self {
        self.padding = [[h, h], [w, w]];
        self
    }
    /// `[[top, bottom], [left, right]]`.
    pub fn sides(mut self, sides: [[usize; 2]; 2]) -> Self {
        self.padding = sides;
        self
    }
}

impl Cropping2D {
    /// `c` rows or columns off every side.
    pub fn new(c: usize) -> Cropping2D {
        Cropping2D {
            cropping: [[c, c], [c, c]],
            input_shape: None,
        }
    }
    /// `h` rows off the top and bottom, `w` columns off the left and right.
    pub fn symmetric(mut self, h: usize, w: usize) -> Self {
        self.cropping = [[h, h], [w, w]];
        self
    }
    /// `[[top, bottom], [left, right]]`.
    pub fn sides(mut self, sides: [[usize; 2]; 2]) -> Self {
        self.cropping = sides;
        self
    }
}

/// `UpSampling2D(size=(2, 2), interpolation='nearest')`: each image scaled up by whole
/// factors, pixels repeated (`Nearest`) or blended (`Bilinear`, half-pixel centres as in
/// Keras 3).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpSampling2D {
    /// The factors for rows and columns (Keras' `size`).
    pub size: (usize, usize),
    /// `Nearest` (the default) or `Bilinear` (Keras' `interpolation`).
    pub interpolation: Interpolation,
    /// The model's per-sample input shape on the first layer (Keras' `input_shape`).
    pub input_shape: Option<Vec<usize>>,
}

impl UpSampling2D {
    /// Scales both axes by `size`.
    pub fn new(size: usize) -> UpSampling2D {
        UpSampling2D {
            size: (size, size),
            interpolation: Interpolation::Nearest,
            input_shape: None,
        }
    }
    /// Scales rows by `h` and columns by `w`.
    pub fn size(mut self, h: usize, w: usize) -> Self {
        self.size = (h, w);
        self
    }
    /// `Nearest` (the default) or `Bilinear` (Keras' `interpolation`).
    pub fn interpolation(mut self, interpolation: Interpolation) -> Self {
        self.interpolation = interpolation;
        self
    }
}

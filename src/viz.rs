//! PNG pictures for the lecture: first-layer filters, feature maps, input images, a
//! confusion-matrix heatmap and training curves.
//!
//! Every function writes one PNG (creating parent folders) and returns an error, never
//! panics, on inconsistent input. Tile pictures are drawn pixel by pixel with `image`;
//! charts with text are drawn with `plotters` using an embedded DejaVu Sans font, so they
//! look the same on every machine and need no system fonts.
//!
//! The sizes of the pictures follow from the public layout constants and functions here
//! ([`GridLayout`], [`filter_layout`], [`feature_map_layout`], [`confusion_matrix_layout`],
//! [`CURVES_SIZE`]), which the tests use to check them.

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, Glyph, ScaleFont, point};
use anyhow::{Context, Result, anyhow, ensure};
use image::{ImageFormat, Rgb, RgbImage};
use plotters::backend::BitMapBackend;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
// Only named through `pb::`: importing its traits would clash with plotters' `Color` methods.
use plotters_backend::{self as pb, BackendColor, BackendCoord, DrawingErrorKind};

use crate::metrics::ConfusionMatrix;

/// Pixels between neighbouring tiles and around the whole grid.
pub const BORDER: u32 = 2;
/// Colour of the border between tiles.
pub const BORDER_COLOR: [u8; 3] = [255, 255, 255];
/// Filter tiles are upscaled (nearest neighbour) by the smallest integer factor that makes
/// the kernel's longer side at least this many pixels (a 3x3 kernel becomes 48x48).
pub const FILTER_TILE_PX: u32 = 48;
/// Feature-map tiles are upscaled the same way to at least this many pixels.
pub const FEATURE_TILE_PX: u32 = 56;
/// Longest side a picture may have; larger requests are refused instead of allocated.
pub const MAX_SIDE: u32 = 16_384;
/// Size (width, height) of the training-curves picture.
pub const CURVES_SIZE: (u32, u32) = (1200, 460);

/// Where the tiles of a tile picture go: `cols` x `rows` tiles of `tile_w` x `tile_h`
/// pixels, with [`BORDER`] pixels between them and around them, filled row by row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    /// Tiles per row.
    pub cols: u32,
    /// Rows of tiles.
    pub rows: u32,
    /// Tile width in pixels.
    pub tile_w: u32,
    /// Tile height in pixels.
    pub tile_h: u32,
}

impl GridLayout {
    /// `n` tiles in a near-square grid: `ceil(sqrt(n))` columns and as many rows as needed.
    pub fn square(n: usize, tile_w: u32, tile_h: u32) -> Self {
        let cols = (n as f64).sqrt().ceil() as usize;
        let rows = if cols == 0 { 0 } else { n.div_ceil(cols) };
        Self {
            cols: px(cols),
            rows: px(rows),
            tile_w,
            tile_h,
        }
    }

    /// Picture size (width, height) in pixels, saturating instead of overflowing.
    pub fn size(&self) -> (u32, u32) {
        let side = |n: u32, tile: u32| {
            n.saturating_mul(tile)
                .saturating_add(n.saturating_add(1).saturating_mul(BORDER))
        };
        (side(self.cols, self.tile_w), side(self.rows, self.tile_h))
    }

    /// Top-left pixel of tile `i`.
    pub fn tile_origin(&self, i: usize) -> (u32, u32) {
        let cols = self.cols.max(1) as usize;
        let (c, r) = (px(i % cols), px(i / cols));
        let at = |k: u32, tile: u32| {
            BORDER.saturating_add(k.saturating_mul(tile.saturating_add(BORDER)))
        };
        (at(c, self.tile_w), at(r, self.tile_h))
    }
}

/// The integer upscale factor that makes `side` pixels at least `min_px` (at least 1).
pub fn upscale(side: usize, min_px: u32) -> u32 {
    min_px.div_ceil(px(side.max(1))).max(1)
}

/// Layout of [`save_filters`]: for `cin` 1 or 3 one tile per filter in a near-square grid;
/// otherwise one row per filter with one grey tile per input channel.
pub fn filter_layout(kh: usize, kw: usize, cin: usize, cout: usize) -> GridLayout {
    let s = upscale(kh.max(kw), FILTER_TILE_PX);
    let (tw, th) = (px(kw).saturating_mul(s), px(kh).saturating_mul(s));
    match cin {
        1 | 3 => GridLayout::square(cout, tw, th),
        // A row per filter keeps a filter's channels together; a square grid would not.
        _ => GridLayout {
            cols: px(cin),
            rows: px(cout),
            tile_w: tw,
            tile_h: th,
        },
    }
}

/// Layout of [`save_feature_maps`]: one tile per channel in a near-square grid.
pub fn feature_map_layout(h: usize, w: usize, c: usize) -> GridLayout {
    let s = upscale(h.max(w), FEATURE_TILE_PX);
    GridLayout::square(c, px(w).saturating_mul(s), px(h).saturating_mul(s))
}

/// Draws first-layer convolution filters, weights in Keras HWIO layout `[kh][kw][cin][cout]`.
///
/// With `cin == 3` each filter is one RGB tile; otherwise each (filter, input channel) is a
/// grey tile (see [`filter_layout`]). Each tile is stretched to its own min..max (a constant
/// tile is mid-grey; non-finite weights are left out of the range).
pub fn save_filters(
    weights: &[f32],
    kh: usize,
    kw: usize,
    cin: usize,
    cout: usize,
    path: &Path,
) -> Result<()> {
    check_len("filter weights", weights.len(), &[kh, kw, cin, cout])?;
    let layout = filter_layout(kh, kw, cin, cout);
    let at =
        |y: usize, x: usize, ci: usize, co: usize| weights[((y * kw + x) * cin + ci) * cout + co];
    let mut tiles = Vec::new();
    for co in 0..cout {
        if cin == 3 {
            let (lo, hi) =
                finite_range((0..kh * kw * 3).map(|i| at(i / (kw * 3), i / 3 % kw, i % 3, co)));
            tiles.push(tile(kh, kw, |y, x| {
                std::array::from_fn(|ci| to_u8(at(y, x, ci, co), lo, hi))
            }));
        } else {
            for ci in 0..cin {
                let (lo, hi) = finite_range((0..kh * kw).map(|i| at(i / kw, i % kw, ci, co)));
                tiles.push(tile(kh, kw, |y, x| [to_u8(at(y, x, ci, co), lo, hi); 3]));
            }
        }
    }
    write_png(&paste_tiles(&layout, kh, kw, &tiles)?, path)
}

/// Draws the feature maps of one image, activations `[h][w][c]` (channels last): one grey
/// tile per channel, each stretched to its own min..max (a constant channel is mid-grey),
/// laid out by [`feature_map_layout`].
pub fn save_feature_maps(
    act: &[f32],
    h: usize,
    w: usize,
    c: usize,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    check_len("feature maps", act.len(), &[h, w, c])?;
    let at = |y: usize, x: usize, ch: usize| act[(y * w + x) * c + ch];
    let tiles: Vec<_> = (0..c)
        .map(|ch| {
            let (lo, hi) = finite_range((0..h * w).map(|i| at(i / w, i % w, ch)));
            tile(h, w, |y, x| [to_u8(at(y, x, ch), lo, hi); 3])
        })
        .collect();
    write_png(
        &paste_tiles(&feature_map_layout(h, w, c), h, w, &tiles)?,
        path,
    )
}

/// Draws one input image, `[h][w][c]` with values in `[0, 1]` and `c` 1 (grey) or 3 (RGB),
/// upscaled `scale` times (nearest neighbour) to `w*scale` x `h*scale` pixels.
pub fn save_image(
    img: &[f32],
    h: usize,
    w: usize,
    c: usize,
    scale: u32,
    path: &Path,
) -> Result<()> {
    ensure!(c == 1 || c == 3, "image must have 1 or 3 channels, got {c}");
    ensure!(scale >= 1, "image scale must be at least 1");
    check_len("image", img.len(), &[h, w, c])?;
    let unit = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8; // NaN casts to 0
    let pixels = tile(h, w, |y, x| {
        let i = (y * w + x) * c;
        std::array::from_fn(|k| unit(img[i + if c == 3 { k } else { 0 }]))
    });
    let (tw, th) = (px(w).saturating_mul(scale), px(h).saturating_mul(scale));
    let layout = GridLayout {
        cols: 1,
        rows: 1,
        tile_w: tw,
        tile_h: th,
    };
    let framed = paste_tiles(&layout, h, w, &[pixels])?;
    // Reuse the tile code, then cut off the frame it adds.
    let img = image::imageops::crop_imm(&framed, BORDER, BORDER, tw, th).to_image();
    write_png(&img, path)
}

/// Draws grey `[h][w]` images (values in `[0, 1]`) as a grid of `cols` columns, row by
/// row (a denoiser's noisy / clean / reconstructed rows), each upscaled `scale` times.
pub fn save_image_grid(
    images: &[&[f32]],
    cols: usize,
    h: usize,
    w: usize,
    scale: u32,
    path: &Path,
) -> Result<()> {
    ensure!(cols > 0 && !images.is_empty(), "an image grid needs images");
    ensure!(scale >= 1, "image scale must be at least 1");
    let unit = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8; // NaN casts to 0
    let mut tiles = Vec::new();
    for img in images {
        check_len("image", img.len(), &[h, w, 1])?;
        tiles.push(tile(h, w, |y, x| [unit(img[y * w + x]); 3]));
    }
    let layout = GridLayout {
        cols: px(cols),
        rows: px(images.len().div_ceil(cols)),
        tile_w: px(w).saturating_mul(scale),
        tile_h: px(h).saturating_mul(scale),
    };
    write_png(&paste_tiles(&layout, h, w, &tiles)?, path)
}

/// Where [`save_confusion_matrix`] puts things: a `width` x `height` picture whose grid of
/// `cell` x `cell` squares starts at (`left`, `top`); row = true class, column = predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeatmapLayout {
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Left edge of the grid in pixels.
    pub left: u32,
    /// Top edge of the grid in pixels.
    pub top: u32,
    /// Side of a cell in pixels.
    pub cell: u32,
}

impl HeatmapLayout {
    /// Top-left pixel of the cell of (true class `row`, predicted class `col`).
    pub fn cell_origin(&self, row: usize, col: usize) -> (u32, u32) {
        let at = |start: u32, k: usize| start.saturating_add(px(k).saturating_mul(self.cell));
        (at(self.left, col), at(self.top, row))
    }
}

/// Layout of the confusion-matrix picture for `num_classes` classes: cells of 64 px up to
/// 10 classes, shrinking to 16 px for many classes, with fixed margins for the names.
pub fn confusion_matrix_layout(num_classes: usize) -> HeatmapLayout {
    let cell = (640 / px(num_classes.max(1))).clamp(16, 64);
    let grid = px(num_classes).saturating_mul(cell);
    HeatmapLayout {
        width: (CM_LEFT + CM_RIGHT).saturating_add(grid),
        height: (CM_TOP + CM_BOTTOM).saturating_add(grid),
        left: CM_LEFT,
        top: CM_TOP,
        cell,
    }
}

// Margins of the confusion-matrix picture. Class names get CM_NAME_PX (about 14 characters
// at LABEL_PT) and are shortened with an ellipsis beyond that.
const CM_NAME_PX: i32 = 130;
const CM_LEFT: u32 = 40 + CM_NAME_PX as u32;
const CM_RIGHT: u32 = 110;
const CM_TOP: u32 = 60;
const CM_BOTTOM: u32 = 45 + CM_NAME_PX as u32;
const TITLE_PT: f64 = 24.0;
const LABEL_PT: f64 = 17.0;
const FONT: &str = "sans-serif";

/// Draws a confusion matrix as a heatmap: true class down the side, predicted class along
/// the bottom, the count in each cell, coloured by the count's share of its row (so classes
/// of different sizes compare), with a colour bar and a title.
pub fn save_confusion_matrix(
    cm: &ConfusionMatrix,
    class_names: &[String],
    title: &str,
    path: &Path,
) -> Result<()> {
    let n = cm.num_classes;
    ensure!(n > 0, "confusion matrix has no classes");
    ensure!(
        Some(cm.counts.len()) == n.checked_mul(n),
        "confusion matrix of {n} classes holds {} counts, expected {n}x{n}",
        cm.counts.len()
    );
    let layout = confusion_matrix_layout(n);
    let (w, h) = (layout.width, layout.height);
    let cell = layout.cell as i32;
    let (x0, y0, side) = (layout.left as i32, layout.top as i32, cell * n as i32);
    render(w, h, path, |root| {
        // Names shrink with the cells so that many classes do not overlap.
        let label = font(LABEL_PT.min(cell as f64 * 0.8));
        let centered = |s: f64| font(s).pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new(
            title,
            (w as i32 / 2, 12),
            font(TITLE_PT).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;

        let count_pt = (cell as f64 * 0.3).min(16.0);
        for t in 0..n {
            let row_total = cm.support(t).max(1) as f64;
            for p in 0..n {
                let v = cm.get(t, p);
                let share = v as f64 / row_total;
                let (x, y) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    blues(share).filled(),
                ))?;
                if count_pt >= 7.0 {
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    let style = centered(count_pt).color(&ink);
                    root.draw(&Text::new(
                        v.to_string(),
                        (x + cell / 2, y + cell / 2),
                        style,
                    ))?;
                }
            }
        }
        root.draw(&Rectangle::new([(x0, y0), (x0 + side, y0 + side)], BLACK))?;

        // Class names: right-aligned left of the rows, and rotated under the columns.
        for c in 0..n {
            let name = fit_text(root, &class_name(class_names, c), &label, CM_NAME_PX)?;
            let mid = y0 + c as i32 * cell + cell / 2;
            let style = label.pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(name.clone(), (x0 - 8, mid), style))?;
            let style = label
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(
                name,
                (x0 + c as i32 * cell + cell / 2, y0 + side + 8),
                style,
            ))?;
        }
        let style = centered(LABEL_PT);
        root.draw(&Text::new(
            "predicted label",
            (x0 + side / 2, h as i32 - 18),
            style.clone(),
        ))?;
        let style = style.transform(FontTransform::Rotate270);
        root.draw(&Text::new("true label", (14, y0 + side / 2), style))?;

        // Colour bar for the row share, 0 at the bottom.
        let (bx, bw) = (x0 + side + 20, 18);
        for i in 0..side {
            let share = 1.0 - i as f64 / (side - 1).max(1) as f64;
            root.draw(&PathElement::new(
                vec![(bx, y0 + i), (bx + bw, y0 + i)],
                blues(share),
            ))?;
        }
        root.draw(&Rectangle::new([(bx, y0), (bx + bw, y0 + side)], BLACK))?;
        for (frac, text) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
            let y = y0 + side - (frac * side as f64) as i32;
            root.draw(&PathElement::new(
                vec![(bx + bw, y), (bx + bw + 4, y)],
                BLACK,
            ))?;
            let style = font(LABEL_PT - 3.0).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(text, (bx + bw + 7, y), style))?;
        }
        let style = font(LABEL_PT - 3.0)
            .transform(FontTransform::Rotate90)
            .pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new(
            "share of true class",
            (bx + bw + 58, y0 + side / 2),
            style,
        ))?;
        Ok(())
    })
}

/// Per-epoch metrics for [`save_training_curves`]. Validation series may be empty.
pub struct Curves<'a> {
    /// Training loss, one value per epoch.
    pub loss: &'a [f32],
    /// Training accuracy, one value per epoch.
    pub accuracy: &'a [f32],
    /// Validation loss (may be empty).
    pub val_loss: &'a [f32],
    /// Validation accuracy (may be empty).
    pub val_accuracy: &'a [f32],
    /// The metric's name, the right panel's title ("accuracy", "binary_accuracy", "mae", …).
    pub metric: &'a str,
}

/// Draws two panels side by side, loss and the metric per epoch (epochs numbered from 1),
/// training against validation, with a legend, axis labels and a title; [`CURVES_SIZE`]
/// pixels. Non-finite values are left out (the line breaks there). Errors only when there
/// is nothing at all to draw.
pub fn save_training_curves(curves: &Curves, title: &str, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let epochs = [
        curves.loss,
        curves.accuracy,
        curves.val_loss,
        curves.val_accuracy,
    ]
    .iter()
    .map(|s| s.len())
    .max()
    .unwrap_or(0);
    ensure!(epochs > 0, "training curves: every series is empty");
    let (w, h) = CURVES_SIZE;
    render(w, h, path, |root| {
        let body = root.titled(title, font(TITLE_PT))?;
        let panels = body.split_evenly((1, 2));
        let sets = [
            (
                "loss",
                curves.loss,
                curves.val_loss,
                SeriesLabelPosition::UpperRight,
            ),
            (
                curves.metric,
                curves.accuracy,
                curves.val_accuracy,
                // Errors fall as accuracies rise: keep the legend off the curves' end.
                if matches!(curves.metric, "mae" | "mse") {
                    SeriesLabelPosition::UpperRight
                } else {
                    SeriesLabelPosition::LowerRight
                },
            ),
        ];
        for (panel, (name, train, val, legend_at)) in panels.iter().zip(sets) {
            draw_panel(
                panel,
                name,
                epochs,
                &[("train", train, TRAIN), ("validation", val, VAL)],
                legend_at,
            )?;
        }
        Ok(())
    })
}

/// Colour of the training curves (matplotlib's first colour, familiar from Keras tutorials).
pub const TRAIN_COLOR: [u8; 3] = [31, 119, 180];
/// Colour of the validation curves (matplotlib's second colour).
pub const VAL_COLOR: [u8; 3] = [255, 127, 14];
const TRAIN: RGBColor = RGBColor(TRAIN_COLOR[0], TRAIN_COLOR[1], TRAIN_COLOR[2]);
const VAL: RGBColor = RGBColor(VAL_COLOR[0], VAL_COLOR[1], VAL_COLOR[2]);

type Area<'a> = DrawingArea<TextFix<'a>, Shift>;

fn draw_panel(
    area: &Area,
    name: &str,
    epochs: usize,
    series: &[(&str, &[f32], RGBColor)],
    legend_at: SeriesLabelPosition,
) -> Result<()> {
    let (lo, hi) = finite_range(series.iter().flat_map(|s| s.1.iter().copied()));
    let (lo, hi) = match (lo as f64, hi as f64) {
        (lo, hi) if lo > hi => (0.0, 1.0), // no finite value at all
        // One distinct value: a band around it, not a degenerate axis.
        (lo, hi) if hi - lo < 1e-9 => (
            lo - (0.1 * lo.abs()).max(0.05),
            hi + (0.1 * hi.abs()).max(0.05),
        ),
        (lo, hi) => (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(name, font(LABEL_PT + 3.0))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(name)
        .x_labels(epochs.min(12))
        // Only whole epochs get a label; plotters may pick fractional ticks for few epochs.
        .x_label_formatter(&|x| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .label_style(font(LABEL_PT - 2.0))
        .axis_desc_style(font(LABEL_PT))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(TRANSPARENT)
        .draw()?;
    for &(label, values, color) in series {
        if values.is_empty() {
            continue;
        }
        let all: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| ((i + 1) as f64, v as f64))
            .collect();
        // Break the line at non-finite values instead of drawing through them.
        let runs = all.split(|p| !p.1.is_finite());
        for (k, run) in runs.filter(|r| !r.is_empty()).enumerate() {
            let line = chart.draw_series(LineSeries::new(run.to_vec(), color.stroke_width(2)))?;
            if k == 0 {
                line.label(label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
            chart.draw_series(run.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .label_font(font(LABEL_PT - 2.0))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// DejaVu Sans, embedded so that text looks the same everywhere without system fonts.
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn dejavu() -> Option<&'static FontRef<'static>> {
    static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    PARSED
        .get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

/// Draws onto a white `w` x `h` canvas with plotters and saves it as PNG.
fn render(w: u32, h: u32, path: &Path, draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    // plotters measures legend text with its own copy of the font, so register it too.
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    ensure!(
        registered && dejavu().is_some(),
        "embedded font DejaVuSans.ttf could not be loaded"
    );
    check_size(w, h)?;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = TextFix(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
        draw(&root)?;
        root.present()?;
    }
    let img =
        RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("chart buffer has the wrong size"))?;
    write_png(&img, path)
}

/// The bitmap backend with its text drawing replaced: plotters 0.3.7 places `ab_glyph`
/// glyphs without their side bearings, so letters crowd ("cl" reads as "d") and sit too high.
/// Everything else goes straight to the bitmap backend.
struct TextFix<'a>(BitMapBackend<'a>);

type BitMapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;
type BackendResult<T = ()> = Result<T, DrawingErrorKind<BitMapError>>;

impl DrawingBackend for TextFix<'_> {
    type ErrorType = BitMapError;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> BackendResult {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> BackendResult {
        self.0.present()
    }
    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> BackendResult {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: pb::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> BackendResult {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: pb::BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        style: &S,
        fill: bool,
    ) -> BackendResult {
        self.0.draw_rect(a, b, style, fill)
    }

    fn estimate_text_size<S: pb::BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> BackendResult<(u32, u32)> {
        let Some(font) = dejavu() else {
            return Ok((0, 0));
        };
        let scaled = font.as_scaled(style.size() as f32);
        let (_, width) = layout_text(font, style.size() as f32, text);
        Ok((
            width.ceil() as u32,
            (scaled.ascent() - scaled.descent()).ceil() as u32,
        ))
    }

    fn draw_text<S: pb::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> BackendResult {
        let Some(font) = dejavu() else { return Ok(()) };
        let size = style.size() as f32;
        let scaled = font.as_scaled(size);
        let (glyphs, width) = layout_text(font, size, text);
        // Offsets from the anchor to the start of the baseline, before rotation.
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        let (ascent, descent) = (scaled.ascent(), scaled.descent());
        let dy = match style.anchor().v_pos {
            VPos::Top => ascent,
            VPos::Center => (ascent + descent) / 2.0,
            VPos::Bottom => descent,
        };
        let (dx, dy) = (dx.round() as i32, dy.round() as i32);
        let (color, turn) = (style.color(), style.transform());
        for glyph in glyphs {
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let corner = outline.px_bounds().min;
            let mut coverage = Vec::new();
            outline.draw(|x, y, c| coverage.push((x as i32, y as i32, c)));
            for (x, y, c) in coverage {
                let (x, y) = turn.transform(corner.x as i32 + x + dx, corner.y as i32 + y + dy);
                let ink = BackendColor {
                    alpha: color.alpha * c as f64,
                    rgb: color.rgb,
                };
                self.0.draw_pixel((pos.0 + x, pos.1 + y), ink)?;
            }
        }
        Ok(())
    }
}

/// Glyphs of `text` on a baseline at y = 0 starting at x = 0, and the advance width.
fn layout_text(font: &FontRef<'static>, size: f32, text: &str) -> (Vec<Glyph>, f32) {
    let scaled = font.as_scaled(size);
    let (mut x, mut prev, mut glyphs) = (0.0, None, Vec::new());
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(size, point(x, 0.0)));
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    (glyphs, x)
}

/// Shortens `text` with an ellipsis until it is at most `max_w` pixels wide.
fn fit_text(area: &Area, text: &str, style: &TextStyle, max_w: i32) -> Result<String> {
    let mut chars: Vec<char> = text.chars().collect();
    let mut s = text.to_string();
    while !chars.is_empty() && area.estimate_text_size(&s, style)?.0 as i32 > max_w {
        chars.pop();
        s = chars.iter().collect::<String>() + "…";
    }
    Ok(s)
}

/// Heatmap colour of a row share `t` in 0..=1: white to dark blue, like matplotlib's
/// "Blues" (non-finite counts as 0).
pub fn heat_color(t: f64) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    [mix(247, 8), mix(251, 48), mix(255, 107)]
}

fn blues(t: f64) -> RGBColor {
    let [r, g, b] = heat_color(t);
    RGBColor(r, g, b)
}

fn class_name(names: &[String], class: usize) -> String {
    names
        .get(class)
        .cloned()
        .unwrap_or_else(|| class.to_string())
}

/// Errors unless `len` equals the product of `dims`, naming both (no overflow panic).
fn check_len(what: &str, len: usize, dims: &[usize]) -> Result<()> {
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    ensure!(
        expected == Some(len),
        "{what}: got {len} values, shape {shape} needs {}",
        expected.map_or("more than usize::MAX".to_string(), |e| e.to_string())
    );
    ensure!(
        dims.iter().all(|&d| d > 0),
        "{what}: shape {shape} is empty"
    );
    Ok(())
}

fn check_size(w: u32, h: u32) -> Result<()> {
    ensure!(
        w > 0 && h > 0 && w <= MAX_SIDE && h <= MAX_SIDE,
        "picture of {w}x{h} pixels is empty or larger than {MAX_SIDE}x{MAX_SIDE}"
    );
    Ok(())
}

/// The (min, max) of the finite values; (inf, -inf) when there are none.
fn finite_range(values: impl Iterator<Item = f32>) -> (f32, f32) {
    values
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// Maps `lo..=hi` onto 0..=255; mid-grey when the range is flat or empty.
fn to_u8(v: f32, lo: f32, hi: f32) -> u8 {
    if hi > lo {
        // `as u8` saturates and maps NaN to 0, so odd values cannot panic.
        ((v - lo) / (hi - lo) * 255.0).round() as u8
    } else {
        128
    }
}

/// An `h` x `w` tile of pixels, row-major.
fn tile(h: usize, w: usize, pixel: impl Fn(usize, usize) -> [u8; 3]) -> Vec<[u8; 3]> {
    (0..h * w).map(|i| pixel(i / w, i % w)).collect()
}

/// Pastes `h` x `w` source tiles into `layout`, scaled up by nearest neighbour.
fn paste_tiles(
    layout: &GridLayout,
    h: usize,
    w: usize,
    tiles: &[Vec<[u8; 3]>],
) -> Result<RgbImage> {
    let (iw, ih) = layout.size();
    check_size(iw, ih)?;
    let mut img = RgbImage::from_pixel(iw, ih, Rgb(BORDER_COLOR));
    let (sx, sy) = (layout.tile_w as usize / w, layout.tile_h as usize / h);
    for (i, pixels) in tiles.iter().enumerate() {
        let (ox, oy) = layout.tile_origin(i);
        for ty in 0..layout.tile_h {
            for tx in 0..layout.tile_w {
                let src = (ty as usize / sy) * w + tx as usize / sx;
                img.put_pixel(ox + tx, oy + ty, Rgb(pixels[src]));
            }
        }
    }
    Ok(img)
}

/// Encodes in memory, then writes atomically (a crash never leaves a half PNG).
fn write_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    crate::io::write_atomic(path, bytes.get_ref())
}

fn px(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

//! Keras' `model.summary()` tables.

use super::{Node, shape_str};

/// Keras (tf.keras 2.x) `model.summary()` text.
pub fn summary(model_name: &str, nodes: &[Node]) -> String {
    const WIDTH: usize = 65;
    const POS: [usize; 3] = [29, 55, 65];
    // Keras' print_row: each column is cut to its width (minus a 2-space gutter) and the
    // rest wraps onto the next line, breaking early after "),"-like endings.
    fn row(fields: [&str; 3]) -> String {
        let mut left: Vec<Vec<char>> = fields.iter().map(|f| f.chars().collect()).collect();
        let mut lines = Vec::new();
        while left.iter().any(|f| !f.is_empty()) {
            let mut line = String::new();
            for col in 0..3 {
                let start = if col > 0 { POS[col - 1] } else { 0 };
                let space = if col < 2 { 2 } else { 0 };
                let mut cutoff = (POS[col] - start - space).min(left[col].len());
                let fit: String = left[col][..cutoff].iter().collect();
                if let Some(c) = ["),", "},", "],", "',"]
                    .iter()
                    .filter_map(|p| fit.find(p).map(|i| i + p.len()))
                    .min()
                {
                    cutoff = c;
                }
                if col == 0 {
                    line.push(' ');
                }
                line.extend(&left[col][..cutoff]);
                line.push_str(&" ".repeat(space));
                left[col].drain(..cutoff);
                let len = line.chars().count();
                line.push_str(&" ".repeat(POS[col].saturating_sub(len)));
            }
            lines.push(line);
        }
        lines.join("\n")
    }
    let total: usize = nodes.iter().map(Node::param_count).sum();
    let trainable: usize = nodes.iter().map(Node::trainable_count).sum();
    let mut out = Vec::new();
    out.push(format!("Model: \"{model_name}\""));
    out.push("_".repeat(WIDTH));
    out.push(row(["Layer (type)", "Output Shape", "Param #"]));
    out.push("=".repeat(WIDTH));
    for n in nodes {
        let name = format!("{} ({})", n.name, n.keras_type);
        out.push(row([
            &name,
            &shape_str(&n.out_shape),
            &n.param_count().to_string(),
        ]));
        out.push(" ".repeat(WIDTH));
    }
    out.push("=".repeat(WIDTH));
    out.push(format!("Total params: {}", thousands(total)));
    out.push(format!("Trainable params: {}", thousands(trainable)));
    out.push(format!(
        "Non-trainable params: {}",
        thousands(total - trainable)
    ));
    out.push("_".repeat(WIDTH));
    out.join("\n") + "\n"
}

/// 1845354 → "1,845,354".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras 3's `model.summary()` of a functional model: a box table of every layer, its
/// input included, with the "Connected to" column when the model is a real graph (a
/// layer reads several tensors, or a tensor is read by several layers), and the
/// parameter counts with their size in memory (float32).
pub fn functional_summary(model_name: &str, nodes: &[Node]) -> String {
    let mut readers = vec![0usize; nodes.len()];
    nodes
        .iter()
        .flat_map(|n| &n.inputs)
        .for_each(|&t| readers[t] += 1);
    let graph = nodes.iter().any(|n| n.inputs.len() > 1) || readers.iter().any(|&r| r > 1);
    // Column widths inside the borders (text plus a space either side), as rich lays
    // out Keras' default line length: 108 with four columns, 88 with three.
    let widths: &[usize] = if graph {
        &[31, 27, 17, 28]
    } else {
        &[38, 29, 17]
    };
    let rule = |l: &str, fill: &str, mid: &str, r: &str| {
        let parts: Vec<String> = widths.iter().map(|&w| fill.repeat(w)).collect();
        format!("{l}{}{r}", parts.join(mid))
    };
    // One table row: each cell word-wrapped into its column (Param # right-aligned).
    let row = |cells: &[String], bar: &str| -> Vec<String> {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(widths)
            .map(|(c, &w)| wrap(c, w - 2))
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        (0..height)
            .map(|i| {
                let cols: Vec<String> = wrapped
                    .iter()
                    .zip(widths)
                    .enumerate()
                    .map(|(col, (lines, &w))| {
                        let t = lines.get(i).map_or("", String::as_str);
                        if col == 2 {
                            format!(" {t:>0$} ", w - 2)
                        } else {
                            format!(" {t:<0$} ", w - 2)
                        }
                    })
                    .collect();
                format!("{bar}{}{bar}", cols.join(bar))
            })
            .collect()
    };
    let mut header: Vec<String> = ["Layer (type)", "Output Shape", "Param #"]
        .map(String::from)
        .to_vec();
    if graph {
        header.push("Connected to".into());
    }
    let mut out = vec![format!("Model: \"{model_name}\""), rule("┏", "━", "┳", "┓")];
    out.extend(row(&header, "┃"));
    out.push(rule("┡", "━", "╇", "┩"));
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(rule("├", "─", "┼", "┤"));
        }
        let mut cells = vec![
            format!("{} ({})", n.name, n.keras_type),
            shape_str(&n.out_shape),
            thousands(n.param_count()),
        ];
        if graph {
            let inbound: Vec<String> = n
                .inputs
                .iter()
                .map(|&t| format!("{}[0][0]", nodes[t].name))
                .collect();
            cells.push(if inbound.is_empty() {
                "-".into()
            } else {
                inbound.join(", ")
            });
        }
        out.extend(row(&cells, "│"));
    }
    out.push(rule("└", "─", "┴", "┘"));
    let total: usize = nodes.iter().map(Node::param_count).sum();
    let trainable: usize = nodes.iter().map(Node::trainable_count).sum();
    for (what, n) in [
        ("Total", total),
        ("Trainable", trainable),
        ("Non-trainable", total - trainable),
    ] {
        out.push(format!(" {what} params: {} ({})", thousands(n), memory(n)));
    }
    out.join("\n") + "\n"
}

/// Words greedily packed into lines of `width` characters; a word longer than a line is
/// cut, ending in "…", as rich does.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let word: String = if word.chars().count() > width {
            word.chars()
                .take(width.saturating_sub(1))
                .chain(['…'])
                .collect()
        } else {
            word.to_string()
        };
        if line.is_empty() {
            line = word;
        } else if line.chars().count() + 1 + word.chars().count() <= width {
            line.push(' ');
            line.push_str(&word);
        } else {
            lines.push(std::mem::replace(&mut line, word));
        }
    }
    lines.push(line);
    lines
}

/// The memory of `params` float32 values as Keras prints it: "1.05 MB", "0.00 B".
fn memory(params: usize) -> String {
    let mut v = params as f64 * 4.0;
    let mut unit = 0;
    let units = ["B", "KB", "MB", "GB", "TB"];
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", units[unit])
}

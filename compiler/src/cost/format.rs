//! Renderers of [`ModelCost`] reports: the torchinfo-style text table, markdown, CSV (one
//! row per layer) and JSON (the documented schema). Several models add a side-by-side
//! comparison (text and markdown) or become a JSON array.

use super::{LayerClass, ModelCost};
use std::fmt::Write;

/// Output format of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text tables (torchinfo's total labels), separable and class sections.
    Table,
    /// The documented JSON schema; an array for several models.
    Json,
    /// One row per layer.
    Csv,
    /// The table sections as markdown.
    Markdown,
}

/// Renders the reports of one or more models in `format`.
pub fn render(costs: &[ModelCost], format: Format) -> Result<String, serde_json::Error> {
    Ok(match format {
        Format::Table => render_text(costs, Style::Text),
        Format::Markdown => render_text(costs, Style::Markdown),
        Format::Csv => render_csv(costs),
        Format::Json => render_json(costs)?,
    })
}

/// JSON: the object of a single model, an array for several; ends with a newline.
pub fn render_json(costs: &[ModelCost]) -> Result<String, serde_json::Error> {
    let mut s = match costs {
        [one] => serde_json::to_string_pretty(one)?,
        many => serde_json::to_string_pretty(many)?,
    };
    s.push('\n');
    Ok(s)
}

/// `1234567` -> `1,234,567`.
pub fn commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// torchinfo's mult-add total: `(unit, value)` in M below 10^9, G below 10^12, else T;
/// an integral value prints without decimals, others with two (thousands separated).
pub fn mult_adds_readable(n: u64) -> (&'static str, String) {
    let x = n as f64;
    let (unit, v) = if x >= 1e12 {
        ("T", x / 1e12)
    } else if x >= 1e9 {
        ("G", x / 1e9)
    } else {
        ("M", x / 1e6)
    };
    let text = if v.fract() == 0.0 {
        commas(v as u64)
    } else {
        let s = format!("{v:.2}");
        let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
        format!("{}.{frac}", commas(int.parse().unwrap_or(0)))
    };
    (unit, text)
}

/// `[1, 3, 224, 224]`, as torchinfo prints shapes.
pub fn shape(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Text,
    Markdown,
}

/// A table: headers, rows, and which columns are right-aligned.
struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&str, bool)]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.0.to_string()).collect(),
            right: headers.iter().map(|h| h.1).collect(),
            rows: Vec::new(),
        }
    }
    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }
    fn render(&self, style: Style) -> String {
        let mut s = String::new();
        match style {
            Style::Markdown => {
                let esc = |c: &str| c.replace('|', "\\|");
                let line = |cells: &[String]| {
                    let cs: Vec<String> = cells.iter().map(|c| esc(c)).collect();
                    format!("| {} |\n", cs.join(" | "))
                };
                s.push_str(&line(&self.headers));
                let seps: Vec<&str> = self
                    .right
                    .iter()
                    .map(|&r| if r { "---:" } else { "---" })
                    .collect();
                writeln!(s, "| {} |", seps.join(" | ")).unwrap();
                for r in &self.rows {
                    s.push_str(&line(r));
                }
            }
            Style::Text => {
                let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
                for r in &self.rows {
                    for (k, c) in r.iter().enumerate() {
                        w[k] = w[k].max(c.chars().count());
                    }
                }
                let line = |cells: &[String]| {
                    let cs: Vec<String> = cells
                        .iter()
                        .enumerate()
                        .map(|(k, c)| {
                            if self.right[k] {
                                format!("{c:>width$}", width = w[k])
                            } else {
                                format!("{c:<width$}", width = w[k])
                            }
                        })
                        .collect();
                    format!("{}\n", cs.join("  ").trim_end())
                };
                let total: usize = w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
                s.push_str(&line(&self.headers));
                writeln!(s, "{}", "-".repeat(total)).unwrap();
                for r in &self.rows {
                    s.push_str(&line(r));
                }
            }
        }
        s
    }
}

fn heading(s: &mut String, style: Style, level: usize, title: &str) {
    match style {
        Style::Markdown => writeln!(s, "{} {title}", "#".repeat(level + 1)).unwrap(),
        Style::Text => {
            let rule = if level == 0 { '=' } else { '-' };
            writeln!(
                s,
                "{title}\n{}",
                rule.to_string().repeat(title.chars().count())
            )
            .unwrap()
        }
    }
}

/// The totals with torchinfo's exact labels, one per line.
pub fn totals_lines(c: &ModelCost) -> Vec<String> {
    let (unit, macs) = mult_adds_readable(c.total_mult_adds);
    let mut lines = vec![
        format!("Total params: {}", commas(c.total_params)),
        format!("Trainable params: {}", commas(c.trainable_params)),
        format!("Non-trainable params: {}", commas(c.non_trainable_params)),
        format!("Total mult-adds ({unit}): {macs}"),
        format!("Input size (MB): {:.2}", c.input_size_mb),
        format!(
            "Forward/backward pass size (MB): {:.2}",
            c.forward_backward_pass_size_mb
        ),
        format!("Params size (MB): {:.2}", c.params_size_mb),
        format!(
            "Estimated Total Size (MB): {:.2}",
            c.estimated_total_size_mb
        ),
    ];
    // Not a torchinfo line: only quantized models have it (params size counts their
    // 8-bit weights at one byte each).
    if c.int8_mult_adds > 0 {
        let (unit, macs) = mult_adds_readable(c.int8_mult_adds);
        lines.insert(4, format!("  of which on int8 weights ({unit}): {macs}"));
    }
    lines
}

fn render_model(s: &mut String, c: &ModelCost, style: Style) {
    let stage = c
        .stage
        .as_deref()
        .map(|st| format!(", stage {st}"))
        .unwrap_or_default();
    heading(
        s,
        style,
        0,
        &format!("Model: {} (batch {}{stage})", c.model, c.batch),
    );
    s.push('\n');

    let mut t = Table::new(&[
        ("Layer", false),
        ("Op", false),
        ("Input shape", false),
        ("Output shape", false),
        ("Params", true),
        ("Mult-adds", true),
        ("Trainable", false),
    ]);
    for l in &c.layers {
        let dash = |n: u64| if n == 0 { "--".to_string() } else { commas(n) };
        t.push(vec![
            l.name.clone(),
            l.op.clone(),
            shape(&l.input_shape),
            shape(&l.output_shape),
            dash(l.params),
            dash(l.mult_adds),
            l.trainable.as_str().to_string(),
        ]);
    }
    s.push_str(&t.render(style));
    s.push('\n');
    for line in totals_lines(c) {
        match style {
            Style::Text => writeln!(s, "{line}").unwrap(),
            Style::Markdown => writeln!(s, "- {line}").unwrap(),
        }
    }
    s.push('\n');
    for n in &c.notes {
        writeln!(s, "Note: {n}").unwrap();
    }
    if !c.notes.is_empty() {
        s.push('\n');
    }

    heading(
        s,
        style,
        1,
        "Depthwise-separable convolutions (mult-adds per image, D_F = depthwise output size)",
    );
    s.push('\n');
    if c.separable.is_empty() {
        s.push_str("No depthwise conv followed by a pointwise conv.\n\n");
    } else {
        let mut t = Table::new(&[
            ("Depthwise", false),
            ("Pointwise", false),
            ("D_K", true),
            ("M", true),
            ("N", true),
            ("D_F", true),
            ("Standard", true),
            ("Separable", true),
            ("Ratio", true),
            ("1/N + 1/D_K^2", true),
            ("Check", false),
        ]);
        let dims = |d: [usize; 2]| {
            if d[0] == d[1] {
                d[0].to_string()
            } else {
                format!("{}x{}", d[0], d[1])
            }
        };
        for p in &c.separable {
            t.push(vec![
                p.depthwise.clone(),
                p.pointwise.clone(),
                dims(p.d_k),
                p.m.to_string(),
                p.n.to_string(),
                dims(p.d_f),
                commas(p.standard_mult_adds),
                commas(p.separable_mult_adds),
                format!("{:.4}", p.ratio),
                format!("{:.4}", p.expected_ratio),
                if p.ratio_matches { "ok" } else { "MISMATCH" }.to_string(),
            ]);
        }
        s.push_str(&t.render(style));
        s.push('\n');
        let st = &c.separable_total;
        writeln!(
            s,
            "Model-wide ({} {}): standard {} -> separable {} mult-adds per image; saved {} ({} of the standard cost, ratio {:.4})\n",
            st.pairs,
            if st.pairs == 1 { "pair" } else { "pairs" },
            commas(st.standard_mult_adds),
            commas(st.separable_mult_adds),
            commas(st.saved_mult_adds),
            pct(1.0 - st.ratio),
            st.ratio
        )
        .unwrap();
    }

    heading(
        s,
        style,
        1,
        "Cost by layer class (f32 bytes moved = input + weights + output)",
    );
    s.push('\n');
    let mut t = Table::new(&[
        ("Class", false),
        ("Layers", true),
        ("Params", true),
        ("Params %", true),
        ("Mult-adds", true),
        ("Mult-adds %", true),
        ("Bytes moved", true),
        ("Mult-adds/byte", true),
    ]);
    for k in c.classes.iter().filter(|k| k.layers > 0) {
        t.push(vec![
            k.class.as_str().to_string(),
            k.layers.to_string(),
            commas(k.params),
            pct(k.params_share),
            commas(k.mult_adds),
            pct(k.mult_adds_share),
            commas(k.bytes_moved),
            format!("{:.2}", k.arithmetic_intensity),
        ]);
    }
    s.push_str(&t.render(style));
}

fn render_comparison(s: &mut String, costs: &[ModelCost], style: Style) {
    heading(s, style, 0, "Comparison");
    s.push('\n');
    let mut headers: Vec<(&str, bool)> = vec![("Metric", false)];
    headers.extend(costs.iter().map(|c| (c.model.as_str(), true)));
    let mut t = Table::new(&headers);
    let mut metric = |name: &str, f: &dyn Fn(&ModelCost) -> String| {
        let mut r = vec![name.to_string()];
        r.extend(costs.iter().map(f));
        t.push(r);
    };
    metric("Batch", &|c| c.batch.to_string());
    metric("Layers with params", &|c| {
        c.layers.iter().filter(|l| l.params > 0).count().to_string()
    });
    metric("Total params", &|c| commas(c.total_params));
    metric("Trainable params", &|c| commas(c.trainable_params));
    metric("Total mult-adds", &|c| {
        let (u, v) = mult_adds_readable(c.total_mult_adds);
        format!("{v} {u}")
    });
    metric("Forward/backward pass size (MB)", &|c| {
        format!("{:.2}", c.forward_backward_pass_size_mb)
    });
    metric("Params size (MB)", &|c| format!("{:.2}", c.params_size_mb));
    metric("Estimated Total Size (MB)", &|c| {
        format!("{:.2}", c.estimated_total_size_mb)
    });
    metric("Separable saving", &|c| {
        if c.separable_total.pairs == 0 {
            "--".to_string()
        } else {
            pct(1.0 - c.separable_total.ratio)
        }
    });
    let share = |c: &ModelCost, k: LayerClass, macs: bool| {
        c.classes
            .iter()
            .find(|x| x.class == k)
            .map(|x| {
                pct(if macs {
                    x.mult_adds_share
                } else {
                    x.params_share
                })
            })
            .unwrap_or_else(|| pct(0.0))
    };
    for k in LayerClass::ALL {
        let present = costs
            .iter()
            .any(|c| c.classes.iter().any(|x| x.class == k && x.layers > 0));
        if !present {
            continue;
        }
        metric(&format!("{} mult-adds %", k.as_str()), &|c| {
            share(c, k, true)
        });
        metric(&format!("{} params %", k.as_str()), &|c| share(c, k, false));
    }
    s.push_str(&t.render(style));
}

fn render_text(costs: &[ModelCost], style: Style) -> String {
    let mut s = String::new();
    for (i, c) in costs.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        render_model(&mut s, c, style);
    }
    if costs.len() > 1 {
        s.push('\n');
        render_comparison(&mut s, costs, style);
    }
    s
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

/// CSV: one row per layer of every model, with a header row.
pub fn render_csv(costs: &[ModelCost]) -> String {
    let mut s = String::from(
        "model,layer,name,node,op,input_shape,output_shape,params,trainable_params,mult_adds,output_bytes,trainable,class\n",
    );
    let dims = |d: &[usize]| {
        d.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("x")
    };
    for c in costs {
        for (i, l) in c.layers.iter().enumerate() {
            let fields = [
                c.model.clone(),
                i.to_string(),
                l.name.clone(),
                l.node.clone(),
                l.op.clone(),
                dims(&l.input_shape),
                dims(&l.output_shape),
                l.params.to_string(),
                l.trainable_params.to_string(),
                l.mult_adds.to_string(),
                l.output_bytes.to_string(),
                l.trainable.as_str().to_string(),
                l.class.map(|k| k.as_str()).unwrap_or("").to_string(),
            ];
            let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            writeln!(s, "{}", row.join(",")).unwrap();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(commas(0), "0");
        assert_eq!(commas(999), "999");
        assert_eq!(commas(1000), "1,000");
        assert_eq!(commas(4011391), "4,011,391");
        assert_eq!(
            mult_adds_readable(12_306_878_432),
            ("G", "12.31".to_string())
        );
        assert_eq!(mult_adds_readable(300_809_384), ("M", "300.81".to_string()));
        assert_eq!(mult_adds_readable(2_000_000), ("M", "2".to_string()));
        assert_eq!(
            mult_adds_readable(1_234_567_890_000_000),
            ("T", "1,234.57".to_string())
        );
        assert_eq!(shape(&[1, 3, 224, 224]), "[1, 3, 224, 224]");
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a.b"), "a.b");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
    }
}

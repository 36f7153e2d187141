//! docs/benchmarks.png: our throughput over each peer's, one group of bars
//! per input and one bar per peer (series), with parity (1x) marked.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// One input's ratios, ours over each series' peer; None where not measured.
pub struct Group {
    pub label: String,
    pub ratios: Vec<Option<f64>>,
}

const COLORS: [RGBColor; 3] = [
    RGBColor(46, 109, 180),
    RGBColor(230, 140, 30),
    RGBColor(110, 110, 110),
];

pub fn draw(
    path: &Path,
    font: &Path,
    series: &[&str],
    groups: &[Group],
    title: &str,
) -> Result<()> {
    let bytes = std::fs::read(font).with_context(|| format!("reading font {}", font.display()))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable TTF font", font.display()))?;

    const SIZE: (u32, u32) = (1000, 600);
    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let top = groups
            .iter()
            .flat_map(|g| g.ratios.iter().flatten())
            .fold(1.0f64, |a, &b| a.max(b))
            * 1.35;
        let n = groups.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("throughput ratio, ours / peer (above 1: ours faster)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (n as f64, 1.0)],
            BLACK.stroke_width(1),
        )))?;
        let width = 0.8 / series.len().max(1) as f64;
        let centered = |size: u32, v: VPos| {
            TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, v))
        };
        for (i, group) in groups.iter().enumerate() {
            for (s, ratio) in group.ratios.iter().enumerate() {
                let Some(ratio) = *ratio else { continue };
                let x = i as f64 + 0.1 + s as f64 * width;
                let color = COLORS[s % COLORS.len()];
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.02, 0.0), (x + width - 0.02, ratio)],
                    color.filled(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("{ratio:.2}x"),
                    (x + width / 2.0, ratio + top * 0.01),
                    centered(13, VPos::Bottom),
                )))?;
            }
            chart.draw_series(std::iter::once(Text::new(
                group.label.clone(),
                (i as f64 + 0.5, -top * 0.02),
                centered(14, VPos::Top),
            )))?;
        }
        for (s, name) in series.iter().enumerate() {
            let y = top * (0.96 - 0.045 * s as f64);
            let color = COLORS[s % COLORS.len()];
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.05, y - top * 0.025), (0.12, y)],
                color.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                name.to_string(),
                (0.15, y),
                ("sans-serif", 14),
            )))?;
        }
        root.present()?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(())
}

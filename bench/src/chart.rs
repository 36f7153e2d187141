//! docs/benchmarks.png: our throughput over the Python backend's, one bar
//! per input, with each target as a mark.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

pub struct Bar {
    pub label: String,
    pub ratio: f64,
    pub target: f64,
}

pub fn draw(path: &Path, font: &Path, bars: &[Bar], title: &str) -> Result<()> {
    let bytes = std::fs::read(font).with_context(|| format!("reading font {}", font.display()))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable TTF font", font.display()))?;

    const SIZE: (u32, u32) = (1000, 560);
    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let top = bars
            .iter()
            .map(|b| b.ratio.max(b.target))
            .fold(1.0f64, f64::max)
            * 1.2;
        let n = bars.len().max(1);
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
            .y_desc("throughput ratio, clip / python (best configurations)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        let blue = RGBColor(46, 109, 180);
        for (i, bar) in bars.iter().enumerate() {
            let x = i as f64;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, bar.ratio)],
                blue.filled(),
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x + 0.1, bar.target), (x + 0.9, bar.target)],
                RED.stroke_width(3),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{:.1}x", bar.ratio),
                (x + 0.35, bar.ratio + top * 0.02),
                ("sans-serif", 16),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                bar.label.clone(),
                (x + 0.25, -top * 0.03),
                ("sans-serif", 14),
            )))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            "red line: target".to_owned(),
            (n as f64 - 1.0, top * 0.95),
            ("sans-serif", 14).into_font().color(&RED),
        )))?;
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

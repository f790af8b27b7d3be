//! SVG plots of load runs (plotters, SVG backend only: no fonts or image
//! libraries to install). One figure has three panels sharing the time
//! axis: requests per second (target, answered, failed), replicas (desired
//! and Ready) and latency (p50, p99).

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::load::Second;

/// One run to draw; several runs (e.g. skiff's policy and the stock one)
/// are drawn side by side as columns.
pub struct Series<'a> {
    pub title: &'a str,
    pub seconds: &'a [Second],
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// Writes an SVG of `runs` to a string.
pub fn svg(runs: &[Series<'_>]) -> Result<String> {
    let mut out = String::new();
    {
        let width = 640 * runs.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut out, (width, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let columns = root.split_evenly((1, runs.len().max(1)));
        for (run, area) in runs.iter().zip(columns.iter()) {
            draw_run(run, area)?;
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}

fn draw_run(
    run: &Series<'_>,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> Result<()> {
    let s = run.seconds;
    let t_max = s.last().map_or(1, |x| x.t + 1) as f64;
    let titled = area.titled(run.title, ("sans-serif", 20)).map_err(err)?;
    let panels = titled.split_evenly((3, 1));

    let rps_max = s
        .iter()
        .map(|x| x.target_rps.max(x.sent as f64))
        .fold(1.0, f64::max)
        * 1.1;
    let mut c = ChartBuilder::on(&panels[0])
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(48)
        .caption("requests per second", ("sans-serif", 14))
        .build_cartesian_2d(0.0..t_max, 0.0..rps_max)
        .map_err(err)?;
    c.configure_mesh().x_desc("s").draw().map_err(err)?;
    line(&mut c, s, |x| Some(x.target_rps), BLACK, "target")?;
    line(&mut c, s, |x| Some(x.ok as f64), BLUE, "answered")?;
    line(&mut c, s, |x| Some(x.errors as f64), RED, "failed")?;
    legend(&mut c)?;

    let rep_max = s
        .iter()
        .filter_map(|x| x.desired.max(x.ready))
        .max()
        .unwrap_or(1) as f64
        * 1.2
        + 1.0;
    let mut c = ChartBuilder::on(&panels[1])
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(48)
        .caption("replicas", ("sans-serif", 14))
        .build_cartesian_2d(0.0..t_max, 0.0..rep_max)
        .map_err(err)?;
    c.configure_mesh().x_desc("s").draw().map_err(err)?;
    line(&mut c, s, |x| x.desired.map(f64::from), MAGENTA, "desired")?;
    line(&mut c, s, |x| x.ready.map(f64::from), GREEN, "ready")?;
    legend(&mut c)?;

    let lat_max = s.iter().map(|x| x.p99_ms).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&panels[2])
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(48)
        .caption("latency (ms)", ("sans-serif", 14))
        .build_cartesian_2d(0.0..t_max, 0.0..lat_max)
        .map_err(err)?;
    c.configure_mesh().x_desc("s").draw().map_err(err)?;
    line(&mut c, s, |x| (x.ok > 0).then_some(x.p50_ms), BLUE, "p50")?;
    line(&mut c, s, |x| (x.ok > 0).then_some(x.p99_ms), RED, "p99")?;
    legend(&mut c)?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn line(
    c: &mut Chart<'_, '_>,
    s: &[Second],
    f: impl Fn(&Second) -> Option<f64>,
    color: RGBColor,
    label: &str,
) -> Result<()> {
    let points: Vec<(f64, f64)> = s.iter().filter_map(|x| Some((x.t as f64, f(x)?))).collect();
    c.draw_series(LineSeries::new(points, color.stroke_width(2)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    Ok(())
}

fn legend<'a>(c: &mut Chart<'a, 'a>) -> Result<()> {
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_has_one_column_per_run_and_every_panel() {
        let seconds: Vec<Second> = (0..10)
            .map(|t| Second {
                t,
                target_rps: 10.0,
                sent: 10,
                ok: 9,
                errors: 1,
                p50_ms: 2.0,
                p99_ms: 5.0,
                desired: Some(2),
                ready: Some(1),
            })
            .collect();
        let out = svg(&[
            Series {
                title: "skiff",
                seconds: &seconds,
            },
            Series {
                title: "stock",
                seconds: &seconds,
            },
        ])
        .expect("svg");
        assert!(out.starts_with("<svg"));
        for text in [
            "skiff",
            "stock",
            "requests per second",
            "replicas",
            "latency (ms)",
            "desired",
            "p99",
        ] {
            assert!(out.contains(text), "{text} missing from the plot");
        }
    }
}

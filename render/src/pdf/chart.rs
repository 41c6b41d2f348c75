//! Bar charts for the PDF writer: horizontal bars per labelled value, vertical bars over
//! consecutive buckets, and the per-status bars (in status colours) that the profile and
//! activity reports both draw.

use quire_crds::ReportStatus;

use super::{BLACK, GREY, MARGIN, PdfWriter, RULE, Rgbf};
use crate::text::{Font, capitalize, text_width};

/// Horizontal bars, one per labelled value, with the value printed after each bar.
pub(crate) fn horizontal_bar_chart(w: &mut PdfWriter, items: &[(String, i64, Rgbf)]) {
    const BAR: f32 = 12.0;
    const GAP: f32 = 5.0;
    let label_width = items
        .iter()
        .map(|(label, _, _)| text_width(label, Font::Regular, 9.0))
        .fold(40.0_f32, f32::max)
        .min(160.0)
        + 10.0;
    let max = items.iter().map(|(_, v, _)| *v).max().unwrap_or(0).max(1) as f32;
    let bar_room = (w.content_width() - label_width - 60.0).max(10.0);

    w.ensure_space((BAR + GAP) * items.len().min(10) as f32);
    for (label, value, rgb) in items {
        w.ensure_space(BAR + GAP);
        let top = w.y;
        let baseline = top - BAR + 3.0;
        let x0 = MARGIN + label_width;
        w.text(
            MARGIN,
            baseline,
            Font::Regular,
            9.0,
            label,
            label_width - 10.0,
            BLACK,
        );
        let length = bar_room * (*value).max(0) as f32 / max;
        w.fill_rect(x0, top - BAR, length, BAR, *rgb);
        w.text(
            x0 + length + 4.0,
            baseline,
            Font::Bold,
            9.0,
            &value.to_string(),
            56.0,
            BLACK,
        );
        w.y = top - BAR - GAP;
    }
    w.y -= 4.0;
}

/// Vertical bars over consecutive buckets (e.g. days), with a y-axis maximum and a few
/// x-axis labels spaced so they never overlap.
pub(crate) fn vertical_bar_chart(w: &mut PdfWriter, buckets: &[(String, i64)], rgb: Rgbf) {
    const PLOT_HEIGHT: f32 = 110.0;
    const AXIS_LABELS: f32 = 14.0;
    if buckets.is_empty() {
        return;
    }
    w.ensure_space(PLOT_HEIGHT + AXIS_LABELS + 16.0);
    let max = buckets.iter().map(|(_, v)| *v).max().unwrap_or(0).max(0);
    let axis_label = max.to_string();
    let y_label_width =
        text_width(&axis_label, Font::Regular, 7.0).max(text_width("0", Font::Regular, 7.0)) + 6.0;
    let x0 = MARGIN + y_label_width;
    let plot_width = w.content_width() - y_label_width;
    let top = w.y - 8.0;
    let bottom = top - PLOT_HEIGHT;
    let slot = plot_width / buckets.len() as f32;
    let bar_width = (slot * 0.7).max(0.5);
    let scale = if max == 0 {
        0.0
    } else {
        (PLOT_HEIGHT - 12.0) / max as f32
    };

    // Axes and the maximum's gridline.
    w.line((x0, bottom), (x0 + plot_width, bottom), 0.8, GREY);
    w.line((x0, bottom), (x0, top), 0.8, GREY);
    if max > 0 {
        let grid_y = bottom + max as f32 * scale;
        w.line((x0, grid_y), (x0 + plot_width, grid_y), 0.3, RULE);
        w.text_right(
            x0 - 3.0,
            grid_y - 2.5,
            Font::Regular,
            7.0,
            &axis_label,
            y_label_width,
            GREY,
        );
    }
    w.text_right(
        x0 - 3.0,
        bottom - 2.5,
        Font::Regular,
        7.0,
        "0",
        y_label_width,
        GREY,
    );

    let show_values = slot >= 14.0;
    for (i, (_, value)) in buckets.iter().enumerate() {
        let x = x0 + slot * i as f32 + (slot - bar_width) / 2.0;
        let height = (*value).max(0) as f32 * scale;
        w.fill_rect(x, bottom, bar_width, height, rgb);
        if show_values && *value > 0 {
            let label = value.to_string();
            let lw = text_width(&label, Font::Regular, 7.0);
            w.text(
                x + bar_width / 2.0 - lw / 2.0,
                bottom + height + 2.0,
                Font::Regular,
                7.0,
                &label,
                lw + 1.0,
                BLACK,
            );
        }
    }

    // X labels: every `step`-th bucket, the step chosen so labels have room.
    let widest = buckets
        .iter()
        .map(|(l, _)| text_width(l, Font::Regular, 7.0))
        .fold(0.0_f32, f32::max)
        + 6.0;
    let step = ((widest / slot).ceil() as usize).max(1);
    let mut labelled: Vec<usize> = (0..buckets.len()).step_by(step).collect();
    let last = buckets.len() - 1;
    // Always label the last bucket (usually "today"), dropping its neighbour if they collide.
    if let Some(&prev) = labelled.last()
        && prev != last
    {
        if ((last - prev) as f32) * slot < widest && labelled.len() > 1 {
            labelled.pop();
        }
        labelled.push(last);
    }
    for i in labelled {
        let label = &buckets[i].0;
        let center = x0 + slot * i as f32 + slot / 2.0;
        let lw = text_width(label, Font::Regular, 7.0);
        let x = (center - lw / 2.0).clamp(MARGIN, (x0 + plot_width - lw).max(MARGIN));
        w.text(x, bottom - 10.0, Font::Regular, 7.0, label, lw + 1.0, GREY);
    }
    w.y = bottom - AXIS_LABELS - 6.0;
}

/// One bar per status, in lifecycle order, each in its status colour.
pub(crate) fn status_bars(count: impl Fn(ReportStatus) -> i64) -> Vec<(String, i64, Rgbf)> {
    ReportStatus::ALL
        .iter()
        .map(|s| (capitalize(s.as_str()), count(*s), status_color(*s)))
        .collect()
}

pub(crate) fn status_color(status: ReportStatus) -> Rgbf {
    match status {
        ReportStatus::Pending => (0.62, 0.62, 0.62),
        ReportStatus::Queued => (0.55, 0.71, 0.87),
        ReportStatus::Running => (0.22, 0.42, 0.69),
        ReportStatus::Completed => (0.30, 0.63, 0.36),
        ReportStatus::Failed => (0.80, 0.27, 0.25),
        ReportStatus::Cancelled => (0.90, 0.60, 0.20),
    }
}

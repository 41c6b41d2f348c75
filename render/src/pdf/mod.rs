//! A small page-layout layer over printpdf's operations: pages with a header and a
//! "Page N of M" footer, text, rectangles, lines, tables that repeat their header on every
//! page, and bar charts.
//!
//! Coordinates are PDF points from the bottom-left corner. `PdfWriter::y` is the top of
//! the free space on the current page and moves down as content is added.

use chrono::{DateTime, Utc};
use printpdf::{
    BuiltinFont, Color, Line, LinePoint, Mm, Op, PaintMode, PdfDocument, PdfFontHandle, PdfPage,
    PdfSaveOptions, PdfWarnMsg, Point, Pt, Rect, Rgb, TextItem,
};

use crate::error::RenderError;
use crate::text::{Font, fit, text_width};

/// Page size in points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PageSize {
    pub width: f32,
    pub height: f32,
}

impl PageSize {
    /// ISO A4, 210 × 297 mm.
    pub const A4_PORTRAIT: PageSize = PageSize {
        width: 595.28,
        height: 841.89,
    };
    pub const A4_LANDSCAPE: PageSize = PageSize {
        width: 841.89,
        height: 595.28,
    };

    /// Width between the side margins.
    pub fn content_width(self) -> f32 {
        self.width - 2.0 * MARGIN
    }
}

pub(crate) const MARGIN: f32 = 40.0;
/// Space the header takes below the top margin.
const HEADER_HEIGHT: f32 = 44.0;
/// Lowest y content may reach; the footer lives below it.
const CONTENT_BOTTOM: f32 = MARGIN + 12.0;
const FOOTER_BASELINE: f32 = MARGIN - 14.0;

pub(crate) const BLACK: (f32, f32, f32) = (0.0, 0.0, 0.0);
pub(crate) const GREY: (f32, f32, f32) = (0.4, 0.4, 0.4);
pub(crate) const RULE: (f32, f32, f32) = (0.75, 0.75, 0.75);
pub(crate) const HEADER_FILL: (f32, f32, f32) = (0.86, 0.89, 0.94);
pub(crate) const ZEBRA_FILL: (f32, f32, f32) = (0.96, 0.96, 0.96);
pub(crate) const ACCENT: (f32, f32, f32) = (0.22, 0.42, 0.69);

pub(crate) type Rgbf = (f32, f32, f32);

fn color((r, g, b): Rgbf) -> Color {
    Color::Rgb(Rgb {
        r,
        g,
        b,
        icc_profile: None,
    })
}

fn point(x: f32, y: f32) -> LinePoint {
    LinePoint {
        p: Point { x: Pt(x), y: Pt(y) },
        bezier: false,
    }
}

struct Page {
    size: PageSize,
    ops: Vec<Op>,
}

/// Lays out a multi-page document.
pub(crate) struct PdfWriter {
    title: String,
    generated: String,
    size: PageSize,
    pages: Vec<Page>,
    /// Index of the page drawing goes to.
    current: usize,
    /// Top of the free space on the current page.
    pub y: f32,
}

impl PdfWriter {
    /// A document with one (empty but for its header) page.
    pub fn new(title: &str, generated_at: DateTime<Utc>, size: PageSize) -> Self {
        let mut writer = Self {
            title: title.to_owned(),
            generated: format!("Generated {}", format_time(generated_at)),
            size,
            pages: Vec::new(),
            current: 0,
            y: 0.0,
        };
        writer.new_page();
        writer
    }

    pub fn content_width(&self) -> f32 {
        self.size.content_width()
    }

    /// Vertical space left on the current page.
    pub fn remaining(&self) -> f32 {
        self.y - CONTENT_BOTTOM
    }

    /// Starts a page with the document header.
    pub fn new_page(&mut self) {
        self.pages.push(Page {
            size: self.size,
            ops: Vec::new(),
        });
        self.current = self.pages.len() - 1;
        let top = self.size.height - MARGIN;
        let right = self.size.width - MARGIN;
        let generated = self.generated.clone();
        let generated_width = text_width(&generated, Font::Regular, 8.0);
        let title_room = self.content_width() - generated_width - 12.0;
        let title = self.title.clone();
        self.text(
            MARGIN,
            top - 16.0,
            Font::Bold,
            16.0,
            &title,
            title_room,
            BLACK,
        );
        self.text(
            right - generated_width,
            top - 14.0,
            Font::Regular,
            8.0,
            &generated,
            generated_width + 1.0,
            GREY,
        );
        self.hline(MARGIN, right, top - 26.0, 0.8, RULE);
        self.y = top - HEADER_HEIGHT;
    }

    /// Starts a new page unless `height` fits on the current one. True if it started one.
    pub fn ensure_space(&mut self, height: f32) -> bool {
        if self.remaining() < height {
            self.new_page();
            true
        } else {
            false
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        &mut self.pages[self.current].ops
    }

    /// Draws one line of text with its baseline at `y`, cut to `max_width`.
    #[allow(clippy::too_many_arguments)]
    pub fn text(
        &mut self,
        x: f32,
        y: f32,
        font: Font,
        size: f32,
        text: &str,
        max_width: f32,
        rgb: Rgbf,
    ) {
        let shown = fit(text, font, size, max_width);
        if shown.is_empty() {
            return;
        }
        let font = match font {
            Font::Regular => BuiltinFont::Helvetica,
            Font::Bold => BuiltinFont::HelveticaBold,
        };
        self.ops().extend([
            Op::StartTextSection,
            Op::SetFillColor { col: color(rgb) },
            Op::SetFont {
                font: PdfFontHandle::Builtin(font),
                size: Pt(size),
            },
            Op::SetTextCursor {
                pos: Point { x: Pt(x), y: Pt(y) },
            },
            Op::ShowText {
                items: vec![TextItem::Text(shown)],
            },
            Op::EndTextSection,
        ]);
    }

    /// Draws text right-aligned so it ends at `right`.
    #[allow(clippy::too_many_arguments)]
    pub fn text_right(
        &mut self,
        right: f32,
        y: f32,
        font: Font,
        size: f32,
        text: &str,
        max_width: f32,
        rgb: Rgbf,
    ) {
        let shown = fit(text, font, size, max_width);
        let width = text_width(&shown, font, size);
        self.text(right - width, y, font, size, &shown, width + 1.0, rgb);
    }

    /// Fills a rectangle whose lower-left corner is (`x`, `y`).
    pub fn fill_rect(&mut self, x: f32, y: f32, width: f32, height: f32, rgb: Rgbf) {
        if width <= 0.0 || height <= 0.0 {
            return;
        }
        self.ops().extend([
            Op::SetFillColor { col: color(rgb) },
            Op::DrawRectangle {
                rectangle: Rect {
                    x: Pt(x),
                    y: Pt(y),
                    width: Pt(width),
                    height: Pt(height),
                    mode: Some(PaintMode::Fill),
                    winding_order: None,
                },
            },
        ]);
    }

    /// Draws a straight line.
    pub fn line(&mut self, from: (f32, f32), to: (f32, f32), thickness: f32, rgb: Rgbf) {
        self.ops().extend([
            Op::SetOutlineColor { col: color(rgb) },
            Op::SetOutlineThickness { pt: Pt(thickness) },
            Op::DrawLine {
                line: Line {
                    points: vec![point(from.0, from.1), point(to.0, to.1)],
                    is_closed: false,
                },
            },
        ]);
    }

    pub fn hline(&mut self, x1: f32, x2: f32, y: f32, thickness: f32, rgb: Rgbf) {
        self.line((x1, y), (x2, y), thickness, rgb);
    }

    /// A section heading, kept on the same page as `keep_with` points of what follows.
    pub fn heading(&mut self, text: &str, keep_with: f32) {
        self.ensure_space(28.0 + keep_with);
        self.y -= 10.0;
        let width = self.content_width();
        self.text(MARGIN, self.y - 12.0, Font::Bold, 12.0, text, width, BLACK);
        self.y -= 20.0;
    }

    /// A line of plain text.
    pub fn paragraph(&mut self, text: &str, size: f32, rgb: Rgbf) {
        self.ensure_space(size + 5.0);
        let width = self.content_width();
        self.text(MARGIN, self.y - size, Font::Regular, size, text, width, rgb);
        self.y -= size + 5.0;
    }

    /// "Label: value" lines with the values aligned.
    pub fn key_values(&mut self, pairs: &[(&str, String)]) {
        let label_width = pairs
            .iter()
            .map(|(label, _)| text_width(label, Font::Bold, 10.0))
            .fold(0.0_f32, f32::max)
            + 12.0;
        for (label, value) in pairs {
            self.ensure_space(15.0);
            let baseline = self.y - 10.0;
            let value_width = self.content_width() - label_width;
            self.text(
                MARGIN,
                baseline,
                Font::Bold,
                10.0,
                label,
                label_width,
                BLACK,
            );
            self.text(
                MARGIN + label_width,
                baseline,
                Font::Regular,
                10.0,
                value,
                value_width,
                BLACK,
            );
            self.y -= 15.0;
        }
    }

    /// Adds the footers and serialises the document.
    pub fn finish(mut self) -> Result<Vec<u8>, RenderError> {
        let total = self.pages.len();
        let title = self.title.clone();
        for index in 0..total {
            self.current = index;
            let size = self.pages[index].size;
            let label = format!("Page {} of {}", index + 1, total);
            let label_width = text_width(&label, Font::Regular, 8.0);
            let title_room = size.content_width() - label_width - 24.0;
            self.hline(MARGIN, size.width - MARGIN, MARGIN - 4.0, 0.5, RULE);
            self.text(
                MARGIN,
                FOOTER_BASELINE,
                Font::Regular,
                8.0,
                &title,
                title_room,
                GREY,
            );
            self.text_right(
                size.width - MARGIN,
                FOOTER_BASELINE,
                Font::Regular,
                8.0,
                &label,
                label_width + 1.0,
                GREY,
            );
        }

        let pages = self
            .pages
            .into_iter()
            .map(|page| {
                PdfPage::new(
                    Mm::from(Pt(page.size.width)),
                    Mm::from(Pt(page.size.height)),
                    page.ops,
                )
            })
            .collect();
        let mut warnings: Vec<PdfWarnMsg> = Vec::new();
        let mut doc = PdfDocument::new(&self.title);
        let bytes = doc
            .with_pages(pages)
            .save(&PdfSaveOptions::default(), &mut warnings);
        for warning in &warnings {
            tracing::debug!(page = warning.page, op = warning.op_id, msg = %warning.msg, "printpdf warning");
        }
        if bytes.is_empty() {
            return Err(RenderError::Pdf(
                "printpdf produced an empty document".into(),
            ));
        }
        Ok(bytes)
    }
}

/// Timestamps as reports show them.
pub(crate) fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// How a column's cells are aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// One table column.
#[derive(Clone, Debug)]
pub(crate) struct Column {
    pub title: String,
    pub width: f32,
    pub align: Align,
}

impl Column {
    pub fn new(title: impl Into<String>, width: f32, align: Align) -> Self {
        Self {
            title: title.into(),
            width,
            align,
        }
    }
}

/// A table whose header row is repeated at the top of every page it spans.
pub(crate) struct Table {
    pub columns: Vec<Column>,
    pub font_size: f32,
    pub row_height: f32,
    /// Inner space between a cell's border and its text.
    pub padding: f32,
    rows_drawn: usize,
}

impl Table {
    pub fn new(columns: Vec<Column>, font_size: f32) -> Self {
        Self {
            columns,
            font_size,
            row_height: font_size + 5.0,
            padding: 3.0,
            rows_drawn: 0,
        }
    }

    pub fn width(&self) -> f32 {
        self.columns.iter().map(|c| c.width).sum()
    }

    /// Draws the header row, on a new page if fewer than `min_rows` rows would fit under it.
    pub fn draw_header(&mut self, w: &mut PdfWriter, min_rows: usize) {
        w.ensure_space(self.row_height * (1 + min_rows) as f32);
        let top = w.y;
        let width = self.width();
        w.fill_rect(
            MARGIN,
            top - self.row_height,
            width,
            self.row_height,
            HEADER_FILL,
        );
        let cells: Vec<String> = self.columns.iter().map(|c| c.title.clone()).collect();
        self.draw_cells(w, top, Font::Bold, &cells);
        w.hline(MARGIN, MARGIN + width, top - self.row_height, 0.6, GREY);
        w.y = top - self.row_height;
        self.rows_drawn = 0;
    }

    /// Draws one body row, starting a new page (with the header) when the current one is full.
    pub fn draw_row<S: AsRef<str>>(&mut self, w: &mut PdfWriter, cells: &[S], font: Font) {
        if w.remaining() < self.row_height {
            w.new_page();
            self.draw_header(w, 1);
        }
        let top = w.y;
        if self.rows_drawn % 2 == 1 {
            w.fill_rect(
                MARGIN,
                top - self.row_height,
                self.width(),
                self.row_height,
                ZEBRA_FILL,
            );
        }
        self.draw_cells(w, top, font, cells);
        w.y = top - self.row_height;
        self.rows_drawn += 1;
    }

    fn draw_cells<S: AsRef<str>>(&self, w: &mut PdfWriter, top: f32, font: Font, cells: &[S]) {
        let baseline = top - self.row_height + (self.row_height - self.font_size) / 2.0 + 1.5;
        let mut x = MARGIN;
        for (column, cell) in self.columns.iter().zip(cells) {
            let room = column.width - 2.0 * self.padding;
            match column.align {
                Align::Left => w.text(
                    x + self.padding,
                    baseline,
                    font,
                    self.font_size,
                    cell.as_ref(),
                    room,
                    BLACK,
                ),
                Align::Right => w.text_right(
                    x + column.width - self.padding,
                    baseline,
                    font,
                    self.font_size,
                    cell.as_ref(),
                    room,
                    BLACK,
                ),
            }
            x += column.width;
        }
    }

    /// Closes the table with a rule under the last row.
    pub fn finish(&self, w: &mut PdfWriter) {
        w.hline(MARGIN, MARGIN + self.width(), w.y, 0.6, GREY);
        w.y -= 6.0;
    }
}

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

/// Shrinks `natural` widths so they sum to at most `available`: columns are scaled
/// proportionally, but none below its minimum in `min` (the others shrink more instead).
/// When even the minimums do not fit, every column gets its minimum and the sum exceeds
/// `available`.
pub(crate) fn fit_widths(natural: &[f32], available: f32, min: &[f32]) -> Vec<f32> {
    let min_of = |i: usize| min.get(i).copied().unwrap_or(0.0).min(natural[i].max(0.0));
    let total: f32 = natural.iter().sum();
    if total <= available {
        return natural.to_vec();
    }
    let mut pinned = vec![false; natural.len()];
    loop {
        let pinned_sum: f32 = (0..natural.len()).filter(|i| pinned[*i]).map(min_of).sum();
        let free_sum: f32 = (0..natural.len())
            .filter(|i| !pinned[*i])
            .map(|i| natural[i])
            .sum();
        let scale = if free_sum > 0.0 {
            ((available - pinned_sum) / free_sum).max(0.0)
        } else {
            0.0
        };
        let mut changed = false;
        for i in 0..natural.len() {
            if !pinned[i] && natural[i] * scale < min_of(i) {
                pinned[i] = true;
                changed = true;
            }
        }
        if !changed {
            return (0..natural.len())
                .map(|i| {
                    if pinned[i] {
                        min_of(i)
                    } else {
                        natural[i] * scale
                    }
                })
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_widths_shrinks_proportionally() {
        assert_eq!(
            fit_widths(&[10.0, 20.0], 100.0, &[5.0, 5.0]),
            vec![10.0, 20.0]
        );
        let w = fit_widths(&[100.0, 300.0], 200.0, &[5.0, 5.0]);
        assert!((w[0] - 50.0).abs() < 1e-3 && (w[1] - 150.0).abs() < 1e-3);
        assert_eq!(fit_widths(&[], 100.0, &[]), Vec::<f32>::new());
    }

    #[test]
    fn fit_widths_respects_each_minimum() {
        let w = fit_widths(&[40.0, 300.0, 300.0], 200.0, &[40.0, 20.0, 20.0]);
        assert_eq!(w[0], 40.0);
        assert!((w.iter().sum::<f32>() - 200.0).abs() < 1e-3, "{w:?}");
        assert_eq!(fit_widths(&[50.0; 4], 10.0, &[5.0; 4]), vec![5.0; 4]);
        // A minimum above the natural width does not widen the column.
        assert_eq!(fit_widths(&[10.0, 500.0], 100.0, &[30.0, 30.0])[0], 10.0);
    }
}

//! Tables for the PDF writer: columns with an alignment, a table whose header row repeats
//! on every page it spans, and `fit_widths` to shrink natural column widths to the page.

use super::{BLACK, GREY, HEADER_FILL, MARGIN, PdfWriter, ZEBRA_FILL};
use crate::text::Font;

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

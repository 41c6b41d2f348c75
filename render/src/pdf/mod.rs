//! A small page-layout layer over printpdf's operations: pages with a header and a
//! "Page N of M" footer, text, rectangles and lines, the report colours, and the
//! timestamp format reports show. Tables that repeat their header on every page live in
//! `table`, bar charts in `chart`; both are re-exported here.
//!
//! Coordinates are PDF points from the bottom-left corner. `PdfWriter::y` is the top of
//! the free space on the current page and moves down as content is added.

mod chart;
mod deflate;
mod table;

use chrono::{DateTime, Utc};
use printpdf::{
    BuiltinFont, Color, Line, LinePoint, Mm, Op, PaintMode, PdfDocument, PdfFontHandle, PdfPage,
    PdfSaveOptions, PdfWarnMsg, Point, Pt, Rect, Rgb, TextItem,
};

use crate::error::RenderError;
use crate::text::{Font, fit, text_width};

pub(crate) use chart::{horizontal_bar_chart, status_bars, vertical_bar_chart};
pub(crate) use table::{Align, Column, Table, fit_widths};

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
    pen: Pen,
}

/// The graphics and text state a page's operations have set so far, so each is written
/// only when it changes: most of a report is text in a few fonts and colours. (Both are
/// graphics state, which text objects do not reset.)
#[derive(Default)]
struct Pen {
    fill: Option<Rgbf>,
    stroke: Option<Rgbf>,
    thickness: Option<f32>,
    font: Option<(Font, f32)>,
}

/// Sets `slot` to `value`; true if that changed it (the operation must be written).
fn changes<T: PartialEq>(slot: &mut Option<T>, value: T) -> bool {
    let changed = slot.as_ref() != Some(&value);
    *slot = Some(value);
    changed
}

impl Page {
    fn fill(&mut self, rgb: Rgbf) {
        if changes(&mut self.pen.fill, rgb) {
            self.ops.push(Op::SetFillColor { col: color(rgb) });
        }
    }
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
            pen: Pen::default(),
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

    fn page(&mut self) -> &mut Page {
        &mut self.pages[self.current]
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
        let page = self.page();
        // One text object per text: extractors that split text at object boundaries
        // (lopdf's, some search indexers) keep each text whole.
        page.ops.push(Op::StartTextSection);
        page.fill(rgb);
        if changes(&mut page.pen.font, (font, size)) {
            let builtin = match font {
                Font::Regular => BuiltinFont::Helvetica,
                Font::Bold => BuiltinFont::HelveticaBold,
            };
            page.ops.push(Op::SetFont {
                font: PdfFontHandle::Builtin(builtin),
                size: Pt(size),
            });
        }
        page.ops.extend([
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
        let page = self.page();
        page.fill(rgb);
        page.ops.push(Op::DrawRectangle {
            rectangle: Rect {
                x: Pt(x),
                y: Pt(y),
                width: Pt(width),
                height: Pt(height),
                mode: Some(PaintMode::Fill),
                winding_order: None,
            },
        });
    }

    /// Draws a straight line.
    pub fn line(&mut self, from: (f32, f32), to: (f32, f32), thickness: f32, rgb: Rgbf) {
        let page = self.page();
        if changes(&mut page.pen.stroke, rgb) {
            page.ops.push(Op::SetOutlineColor { col: color(rgb) });
        }
        if changes(&mut page.pen.thickness, thickness) {
            page.ops.push(Op::SetOutlineThickness { pt: Pt(thickness) });
        }
        page.ops.push(Op::DrawLine {
            line: Line {
                points: vec![point(from.0, from.1), point(to.0, to.1)],
                is_closed: false,
            },
        });
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
        // Uncompressed from printpdf, then deflated here: lopdf's own pass builds a new
        // compressor (hundreds of KiB, zeroed) per stream at the slowest level, which cost
        // more than laying out the whole page.
        let uncompressed = PdfSaveOptions {
            optimize: false,
            ..PdfSaveOptions::default()
        };
        let mut lopdf_doc = doc
            .with_pages(pages)
            .to_lopdf_document(&uncompressed, &mut warnings);
        for warning in &warnings {
            tracing::debug!(page = warning.page, op = warning.op_id, msg = %warning.msg, "printpdf warning");
        }
        deflate::compress_streams(&mut lopdf_doc)?;
        let mut bytes = Vec::with_capacity(8 * 1024);
        lopdf_doc
            .save_to(&mut bytes)
            .map_err(|e| RenderError::Pdf(format!("writing the PDF failed: {e}")))?;
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

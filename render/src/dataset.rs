//! The dataset report: fetched rows as CSV, JSON or a paginated PDF table.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use quire_crds::ReportFormat;
use serde_json::Value;

use crate::csv_cell::{escape_formula, json_cell, write_cells};
use crate::error::RenderError;
use crate::fetch::Dataset;
use crate::output::{AtomicOutput, write_atomically};
use crate::pdf::{
    ACCENT, Align, Column, GREY, PageSize, PdfWriter, Table, fit_widths, format_time,
};
use crate::progress::{Phase, Progress};
use crate::stream::StreamedDataset;
use crate::text::{Font, cell_text, text_width, text_width_capped};

/// Renders `data` to `out` as CSV, JSON or PDF. Blocking; progress goes from 50 (where
/// [`crate::fetch_dataset`] stops) to 100.
pub fn render_dataset(
    data: &Dataset,
    format: ReportFormat,
    out: &Path,
    progress: &Progress,
) -> Result<(), RenderError> {
    let phase = progress.phase(50, 100);
    match format {
        ReportFormat::Csv => write_csv(&data.columns, out, |row| in_memory(data, &phase, row)),
        ReportFormat::Json => write_json(&data.columns, out, |row| in_memory(data, &phase, row)),
        ReportFormat::Pdf => write_pdf(data, out, &phase),
    }?;
    phase.finish();
    Ok(())
}

/// Renders a dataset streamed from its body ([`crate::download_dataset`]): CSV and JSON
/// row by row from the body to the file, so memory stays flat whatever the row count; PDF
/// from the rows in memory (as many as the source's row cap allows). Blocking; progress
/// goes from 40 (where the download stops) to 100.
pub fn render_streamed_dataset(
    data: &StreamedDataset,
    format: ReportFormat,
    out: &Path,
    progress: &Progress,
) -> Result<(), RenderError> {
    let phase = progress.phase(40, 100);
    match format {
        ReportFormat::Csv | ReportFormat::Json => {
            let columns = data.columns(&phase.sub(0.0, 0.4))?;
            let rows = phase.sub(0.4, 1.0);
            if format == ReportFormat::Csv {
                write_csv(&columns, out, |row| streamed(data, &columns, &rows, row))
            } else {
                write_json(&columns, out, |row| streamed(data, &columns, &rows, row))
            }
        }
        ReportFormat::Pdf => {
            let loaded = data.load(&phase.sub(0.0, 0.4))?;
            write_pdf(&loaded, out, &phase.sub(0.4, 1.0))
        }
    }?;
    phase.finish();
    Ok(())
}

const PROGRESS_EVERY: usize = 256;

/// Feeds the rows of an in-memory dataset to `row`, reporting progress.
fn in_memory(
    data: &Dataset,
    phase: &Phase<'_>,
    row: &mut dyn FnMut(&[Value]) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    for (index, values) in data.rows.iter().enumerate() {
        row(values)?;
        if index % PROGRESS_EVERY == 0 {
            phase.report(index as u64, data.rows.len() as u64)?;
        }
    }
    Ok(())
}

/// Feeds the rows of a streamed dataset to `row`, one at a time.
fn streamed(
    data: &StreamedDataset,
    columns: &[String],
    phase: &Phase<'_>,
    row: &mut Rows<'_>,
) -> Result<(), RenderError> {
    data.for_each_row(columns, phase, &mut |values| row(&values))
        .map(|_| ())
}

/// Something that calls back once per row, in order.
type Rows<'f> = dyn FnMut(&[Value]) -> Result<(), RenderError> + 'f;

fn write_csv(
    columns: &[String],
    out: &Path,
    feed: impl FnOnce(&mut Rows<'_>) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    let mut output = AtomicOutput::create(out)?;
    {
        let mut csv = csv::Writer::from_writer(output.writer());
        // With no columns there is nothing to write: an empty record would be `""`.
        if !columns.is_empty() {
            // Column names come from the upstream's keys: they are text cells like any other.
            write_cells(&mut csv, columns.iter().map(|c| escape_formula(c)))?;
            feed(&mut |row| {
                write_cells(&mut csv, padded(row, columns.len()).map(json_cell))?;
                Ok(())
            })?;
        }
        let mut buffered = csv
            .into_inner()
            .map_err(|e| RenderError::Io(e.into_error()))?;
        buffered.flush()?;
    }
    output.commit()
}

/// The row's values, one per column: missing trailing values are `null`, extra ones dropped.
fn padded(row: &[Value], columns: usize) -> impl Iterator<Item = &Value> {
    row.iter()
        .chain(std::iter::repeat(&Value::Null))
        .take(columns)
}

/// A JSON array of objects, column → value, written row by row.
fn write_json(
    columns: &[String],
    out: &Path,
    feed: impl FnOnce(&mut Rows<'_>) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    let mut output = AtomicOutput::create(out)?;
    {
        let mut w = output.writer();
        w.write_all(b"[")?;
        let mut written = 0usize;
        feed(&mut |row| {
            w.write_all(if written == 0 { b"\n{" } else { b",\n{" })?;
            for (i, (column, value)) in columns.iter().zip(padded(row, columns.len())).enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut w, column).map_err(std::io::Error::from)?;
                w.write_all(b":")?;
                serde_json::to_writer(&mut w, value).map_err(std::io::Error::from)?;
            }
            w.write_all(b"}")?;
            written += 1;
            Ok(())
        })?;
        w.write_all(if written == 0 { b"]\n" } else { b"\n]\n" })?;
        w.flush()?;
    }
    output.commit()
}

const FONT_SIZE: f32 = 7.5;
const PADDING: f32 = 3.0;
const MIN_COLUMN: f32 = 30.0;
const MAX_COLUMN: f32 = 200.0;
/// Columns are not squeezed below their header's width, up to this much.
const MAX_HEADER: f32 = 90.0;

fn write_pdf(data: &Dataset, out: &Path, phase: &Phase<'_>) -> Result<(), RenderError> {
    let layout = phase.sub(0.0, 0.8);
    let title = data
        .title
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or(&data.source);
    // Natural widths: the widest of header and cells, within bounds. Measuring stops at the
    // maximum width, so even 10 000 rows of long text cost little.
    let headers: Vec<f32> = data
        .columns
        .iter()
        .map(|name| {
            (text_width_capped(name, Font::Bold, FONT_SIZE, MAX_HEADER) + 2.0 * PADDING)
                .clamp(MIN_COLUMN, MAX_HEADER)
        })
        .collect();
    let natural: Vec<f32> = data
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let header = text_width_capped(name, Font::Bold, FONT_SIZE, MAX_COLUMN);
            let widest = data
                .rows
                .iter()
                .filter_map(|row| row.get(i))
                .map(|v| text_width_capped(&cell_text(v), Font::Regular, FONT_SIZE, MAX_COLUMN))
                .fold(header, f32::max);
            (widest + 2.0 * PADDING).clamp(MIN_COLUMN, MAX_COLUMN)
        })
        .collect();
    let numeric: Vec<bool> = (0..data.columns.len())
        .map(|i| {
            let mut values = data
                .rows
                .iter()
                .filter_map(|row| row.get(i))
                .filter(|v| !v.is_null())
                .peekable();
            values.peek().is_some() && values.all(Value::is_number)
        })
        .collect();
    let number_width =
        text_width(&data.rows.len().to_string(), Font::Regular, FONT_SIZE).max(8.0) + 2.0 * PADDING;

    // Portrait when the table fits, else landscape, split into column groups if needed.
    let total: f32 = natural.iter().sum::<f32>() + number_width;
    let size = if total <= PageSize::A4_PORTRAIT.content_width() {
        PageSize::A4_PORTRAIT
    } else {
        PageSize::A4_LANDSCAPE
    };
    let available = size.content_width() - number_width;
    let groups = column_groups(&natural, &headers, available);

    let mut w = PdfWriter::new(title, data.fetched_at, size);
    let mut facts = vec![
        ("Data source", data.source.clone()),
        ("Fetched", format_time(data.fetched_at)),
        ("Rows", data.rows.len().to_string()),
        ("Columns", data.columns.len().to_string()),
    ];
    if groups.len() > 1 {
        facts.push((
            "Layout",
            format!(
                "the columns are split over {} tables of the same rows",
                groups.len()
            ),
        ));
    }
    w.key_values(&facts);
    if data.truncated {
        w.paragraph(
            &format!(
                "Note: the data source returned more rows than the row cap; only the first {} rows are included.",
                data.rows.len()
            ),
            9.0,
            ACCENT,
        );
    }
    if data.columns.is_empty() {
        w.paragraph("The data source returned no columns.", 9.0, GREY);
    }

    let work = (groups.len() * data.rows.len()) as u64;
    for (g, group) in groups.iter().enumerate() {
        if groups.len() > 1 {
            if g > 0 {
                w.new_page();
            }
            w.heading(
                &format!(
                    "Columns {}-{} of {}",
                    group.start + 1,
                    group.end,
                    data.columns.len()
                ),
                40.0,
            );
        } else {
            w.y -= 8.0;
        }
        let widths = fit_widths(&natural[group.clone()], available, &headers[group.clone()]);
        let mut columns = vec![Column::new("#", number_width, Align::Right)];
        columns.extend(group.clone().zip(widths).map(|(i, width)| {
            Column::new(
                data.columns[i].clone(),
                width,
                if numeric[i] {
                    Align::Right
                } else {
                    Align::Left
                },
            )
        }));
        let mut table = Table::new(columns, FONT_SIZE);
        table.draw_header(&mut w, 3);
        let mut cells: Vec<String> = Vec::with_capacity(group.len() + 1);
        for (index, row) in data.rows.iter().enumerate() {
            cells.clear();
            cells.push((index + 1).to_string());
            cells.extend(group.clone().map(|i| {
                row.get(i)
                    .map(|v| cell_text(v).into_owned())
                    .unwrap_or_default()
            }));
            table.draw_row(&mut w, &cells, Font::Regular);
            if index % PROGRESS_EVERY == 0 {
                layout.report((g * data.rows.len() + index) as u64, work)?;
            }
        }
        table.finish(&mut w);
        if data.rows.is_empty() {
            w.paragraph("The data source returned no rows.", 9.0, GREY);
        }
    }
    layout.finish();

    let bytes = w.finish()?;
    phase.sub(0.0, 0.95).finish();
    write_atomically(out, &bytes)
}

/// Splits columns into consecutive groups that fit `available` points when each column may
/// shrink to 60% of its natural width, but not below its header's width (`headers`).
fn column_groups(natural: &[f32], headers: &[f32], available: f32) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut used = 0.0;
    for (i, width) in natural.iter().enumerate() {
        let shrunk = (width * 0.6)
            .max(headers.get(i).copied().unwrap_or(MIN_COLUMN))
            .min(*width);
        if i > start && used + shrunk > available {
            groups.push(start..i);
            start = i;
            used = 0.0;
        }
        used += shrunk;
    }
    if start < natural.len() {
        groups.push(start..natural.len());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_grouped_to_fit_the_page() {
        assert!(column_groups(&[], &[], 500.0).is_empty());
        assert_eq!(
            column_groups(&[100.0, 100.0], &[30.0; 2], 500.0),
            vec![0..2]
        );
        // Each 200-point column may shrink to 120: four fit in 500, the fifth starts a group.
        assert_eq!(
            column_groups(&[200.0; 5], &[30.0; 5], 500.0),
            vec![0..4, 4..5]
        );
        // ... but not below its header: with 150-point headers only three fit.
        assert_eq!(
            column_groups(&[200.0; 5], &[150.0; 5], 500.0),
            vec![0..3, 3..5]
        );
        // A single column wider than the page still gets a group of its own.
        assert_eq!(column_groups(&[2000.0], &[30.0], 500.0), vec![0..1]);
    }
}

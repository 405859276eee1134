//! The command line's tables: the plan, the warm's report, the check and
//! doctor's findings, for people to read.

use std::io::{self, Write};

use crate::check::{self, Cache};
use crate::doctor;
use crate::outcome::ImageOutcome;
use crate::plan::{PlannedImage, Source};
use crate::warm::Report;

pub fn write_plan_table(out: &mut impl Write, planned: &[PlannedImage]) -> io::Result<()> {
    let rows: Vec<[String; 4]> =
        planned
            .iter()
            .map(|image| {
                let version = image.reference.as_ref().map_or(String::new(), |r| {
                    match (r.tag(), r.digest()) {
                        (Some(tag), Some(digest)) => format!("{tag}@{digest}"),
                        (Some(tag), None) => tag.to_string(),
                        (None, Some(digest)) => digest.to_string(),
                        (None, None) => "latest (implied)".to_string(),
                    }
                });
                let version = match (&image.unresolved, &image.error) {
                    (Some(_), None) => "selector: tags listed with --resolve".to_string(),
                    _ => version,
                };
                let input = image_cell(&image.input, image.selector.as_deref());
                match (&image.target, &image.error) {
                    (Some(target), None) => [
                        input,
                        target.cache_repository.clone(),
                        version,
                        target.rule.clone(),
                    ],
                    (None, _) if image.not_warmed.is_some() => [
                        input,
                        "-".to_string(),
                        version,
                        format!("not warmed: {}", image.not_warmed.as_deref().unwrap_or("")),
                    ],
                    (target, error) => [
                        input,
                        target
                            .as_ref()
                            .map_or("-".to_string(), |t| t.cache_repository.clone()),
                        version,
                        format!("error: {}", error.as_deref().unwrap_or("not planned")),
                    ],
                }
            })
            .collect();
    let header = ["IMAGE", "CACHE REPOSITORY", "TAG/DIGEST", "RULE"];
    let sources = planned.iter().map(|image| &image.source);
    write_table_with_sources(out, header, rows, sources)
}

/// The table, with a SOURCE column when some image did not come from the list.
fn write_table_with_sources<'a, const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: Vec<[String; N]>,
    sources: impl Iterator<Item = &'a Source> + Clone,
) -> io::Result<()> {
    if sources.clone().all(|source| *source == Source::List) {
        return write_table(out, header, &rows);
    }
    let with_source = |cells: [String; N], source: String| -> Vec<String> {
        let mut row = Vec::from(cells);
        row.insert(1, source);
        row
    };
    let header = with_source(header.map(str::to_string), "SOURCE".to_string());
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .zip(sources)
        .map(|(row, source)| with_source(row, source.to_string()))
        .collect();
    write_rows(out, &header, &rows)
}

/// An image as a table shows it: with the selector that selected it.
fn image_cell(input: &str, selector: Option<&str>) -> String {
    match selector {
        Some(selector) if selector != input => format!("{input} (selected by {selector})"),
        _ => input.to_string(),
    }
}

pub fn write_warm_report(
    out: &mut impl Write,
    report: &Report,
    not_warmed: &[PlannedImage],
) -> io::Result<()> {
    let rows: Vec<[String; 6]> = report
        .images
        .iter()
        .map(|image| {
            let version = match (&image.tag, &image.digest) {
                (Some(tag), Some(digest)) => format!("{tag} {}", short_digest(digest)),
                (Some(tag), None) => tag.clone(),
                (None, Some(digest)) => short_digest(digest),
                (None, None) => String::new(),
            };
            [
                match &image.via_tag {
                    Some(tag) => format!("{} (via tag {tag})", image.input),
                    None => image_cell(&image.input, image.selector.as_deref()),
                },
                image.status.name().to_string(),
                image.cache_repository.clone().unwrap_or_else(|| "-".into()),
                version,
                platforms_cell(image),
                layers_cell(image),
            ]
        })
        .collect();
    let header = [
        "IMAGE",
        "STATUS",
        "CACHE REPOSITORY",
        "TAG DIGEST",
        "PLATFORMS",
        "LAYERS CACHED",
    ];
    let sources = report.images.iter().map(|image| &image.source);
    write_table_with_sources(out, header, rows, sources)?;

    let troubled = report.images.iter().filter(|image| !image.status.is_warm());
    for image in troubled {
        writeln!(out)?;
        let code = image
            .failure_code
            .as_deref()
            .map(|c| format!("{c}: "))
            .unwrap_or_default();
        writeln!(
            out,
            "{} {}: {code}{}",
            image.input,
            image.status.name(),
            image.message.as_deref().unwrap_or("")
        )?;
        if let Some(hint) = &image.hint {
            writeln!(out, "  hint: {hint}")?;
        }
    }
    let s = &report.summary;
    writeln!(out)?;
    writeln!(
        out,
        "{} image{}: {} imported, {} refreshed, {} unchanged, {} pending, {} failed, {} skipped{} in {:.1}s",
        s.total,
        if s.total == 1 { "" } else { "s" },
        s.imported,
        s.refreshed,
        s.unchanged,
        s.pending,
        s.failed,
        s.skipped,
        match s.retrying {
            0 => String::new(),
            n => format!(", {n} retrying"),
        },
        s.duration_ms as f64 / 1000.0
    )?;
    let layers = &s.layers;
    if layers.total > 0 {
        writeln!(
            out,
            "{} distinct blobs: {} cached on ECR's storage, {} pending, {} failed",
            layers.total, layers.cached, layers.pending, layers.failed
        )?;
    }
    write_not_warmed(out, not_warmed, "warmed")
}

/// The line on the images that ECS pulls without a cache, when there are any.
fn write_not_warmed(
    out: &mut impl Write,
    not_warmed: &[PlannedImage],
    verb: &str,
) -> io::Result<()> {
    let n = not_warmed.len();
    if n == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "{n} image{} that ECS runs not {verb}: ECS pulls {} without a pull-through cache \
         (plan --from-ecs says why for each)",
        if n == 1 { "" } else { "s" },
        if n == 1 { "it" } else { "them" },
    )
}

pub fn write_check_report(
    out: &mut impl Write,
    report: &check::Report,
    not_warmed: &[PlannedImage],
) -> io::Result<()> {
    let digest_cell = |digest: &Option<String>| digest.as_deref().map_or("-".into(), short_digest);
    let rows: Vec<[String; 6]> = report
        .images
        .iter()
        .map(|image| {
            [
                image_cell(&image.input, image.selector.as_deref()),
                image.cache.name().to_string(),
                image.cache_repository.clone().unwrap_or_else(|| "-".into()),
                digest_cell(&image.cached_digest),
                digest_cell(&image.upstream_digest),
                image.last_pulled.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "IMAGE",
        "CACHE",
        "CACHE REPOSITORY",
        "CACHED",
        "UPSTREAM",
        "LAST PULLED",
    ];
    write_table(out, header, &rows)?;
    let unknown = report
        .images
        .iter()
        .filter(|image| image.cache == Cache::Unknown);
    for image in unknown {
        writeln!(out)?;
        writeln!(
            out,
            "{} unknown: {}",
            image.input,
            image.error.as_deref().unwrap_or("")
        )?;
    }
    let s = &report.summary;
    writeln!(out)?;
    writeln!(
        out,
        "{} image{}: {} fresh, {} stale, {} missing, {} unknown in {:.1}s",
        s.total,
        if s.total == 1 { "" } else { "s" },
        s.fresh,
        s.stale,
        s.missing,
        s.unknown,
        s.duration_ms as f64 / 1000.0
    )?;
    if s.stale + s.missing > 0 {
        writeln!(
            out,
            "warm pulls what is missing now; a stale tag is refreshed by the cache at a pull once \
             its 24-hour re-check allows"
        )?;
    }
    write_not_warmed(out, not_warmed, "checked")
}

/// The caller first, then one line per finding, with its fix beneath.
pub fn write_doctor_report(out: &mut impl Write, report: &doctor::Report) -> io::Result<()> {
    writeln!(
        out,
        "caller: {} (account {}), Region {}",
        report.caller.arn, report.caller.account, report.region
    )?;
    writeln!(out)?;
    let width = report
        .findings
        .iter()
        .map(|finding| finding.check.name().len())
        .max()
        .unwrap_or(0);
    for finding in &report.findings {
        writeln!(
            out,
            "{:<7}  {:<width$}  {}: {}",
            finding.status.name(),
            finding.check.name(),
            finding.subject,
            finding.message
        )?;
        if let Some(fix) = &finding.fix {
            writeln!(out, "{:<7}  {:<width$}  fix: {fix}", "", "")?;
        }
    }
    let s = &report.summary;
    writeln!(out)?;
    writeln!(
        out,
        "{} finding{}: {} ok, {} warning{}, {} error{}",
        s.ok + s.warning + s.error,
        if s.ok + s.warning + s.error == 1 {
            ""
        } else {
            "s"
        },
        s.ok,
        s.warning,
        if s.warning == 1 { "" } else { "s" },
        s.error,
        if s.error == 1 { "" } else { "s" }
    )
}

/// `linux/amd64 linux/arm64/v8`, a platform marked when it is not warm.
fn platforms_cell(image: &ImageOutcome) -> String {
    let names: Vec<String> = image
        .platforms
        .iter()
        .filter_map(|platform| {
            let name = platform.platform.clone()?;
            Some(match platform.status.is_warm() {
                true => name,
                false => format!("{name}({})", platform.status.name()),
            })
        })
        .collect();
    match names.is_empty() {
        true => "-".to_string(),
        false => names.join(" "),
    }
}

/// `7/7`: blobs on ECR's storage of all blobs, over every platform.
fn layers_cell(image: &ImageOutcome) -> String {
    let (cached, total) = image
        .platforms
        .iter()
        .filter_map(|platform| platform.layers)
        .fold((0, 0), |(cached, total), layers| {
            (cached + layers.cached, total + layers.total)
        });
    match total {
        0 => "-".to_string(),
        _ => format!("{cached}/{total}"),
    }
}

/// `sha256:` and the first 12 hex digits, as `docker images` shortens IDs.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            format!("{algorithm}:{}", hex.chars().take(12).collect::<String>())
        }
        None => digest.to_string(),
    }
}

/// Writes left-aligned columns; the last column is not padded.
fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let rows: Vec<&[String]> = rows.iter().map(|row| row.as_slice()).collect();
    write_rows(out, &header.map(str::to_string), &rows)
}

fn write_rows<R: AsRef<[String]>>(
    out: &mut impl Write,
    header: &[String],
    rows: &[R],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row.as_ref()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rows = rows.iter().map(|row| row.as_ref());
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_shortened_like_image_ids() {
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
    }
}

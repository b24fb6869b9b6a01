//! `--report DIR`: one self-contained index.html with hand-written inline SVG charts (startup,
//! first output, memory, disk) and the isolation matrix.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::render::{fmt_bytes, fmt_ms, NOTES};
use super::row::{Measured, Row};

/// One bar: label, value, optional (min, max) whisker.
struct Bar {
    label: String,
    value: f64,
    range: Option<(f64, f64)>,
    text: String,
}

pub fn write(dir: &Path, rows: &[Row], host: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating report dir {}", dir.display()))?;
    let path = dir.join("index.html");
    fs::write(&path, html(rows, host)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub fn html(rows: &[Row], host: &str) -> String {
    let avail: Vec<&Row> = rows.iter().filter(|r| r.available).collect();
    let stats_bars = |pick: fn(&Row) -> Option<super::measure::Stats>| -> Vec<Bar> {
        avail
            .iter()
            .filter_map(|r| {
                let s = pick(r)?;
                Some(Bar {
                    label: r.full_label(),
                    value: s.median,
                    range: Some((s.min, s.max)),
                    text: format!("{} ms", fmt_ms(s.median)),
                })
            })
            .collect()
    };
    let byte_bars = |pick: fn(&Row) -> Option<u64>| -> Vec<Bar> {
        avail
            .iter()
            .filter_map(|r| {
                let b = pick(r)?;
                Some(Bar {
                    label: r.full_label(),
                    value: b as f64 / (1024.0 * 1024.0),
                    range: None,
                    text: fmt_bytes(Some(b)),
                })
            })
            .collect()
    };

    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>isobox compare</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;\
         text-align:left;font-size:14px}th{background:#f0f0f0}.good{background:#d9f2d9}\
         .bad{background:#f8d7d7}.na{color:#888}svg{display:block;margin:1em 0}\
         </style></head><body>\n",
    );
    let _ = writeln!(h, "<h1>isobox compare</h1>\n<p>{}</p>", esc(host));
    h.push_str(&numbers_table(rows));
    h.push_str(&chart(
        "Startup: run of /bin/true (median, min-max; log scale)",
        "ms",
        &stats_bars(|r| r.startup_ms),
        true,
    ));
    h.push_str(&chart(
        "Time to first output: echo ready (median, min-max; log scale)",
        "ms",
        &stats_bars(|r| r.first_output_ms),
        true,
    ));
    h.push_str(&chart(
        "Peak RSS of the runtime's host processes",
        "MiB",
        &byte_bars(|r| r.peak_rss_bytes),
        false,
    ));
    h.push_str(&chart(
        "Disk needed beyond the bundle",
        "MiB",
        &byte_bars(|r| r.disk_bytes),
        false,
    ));
    h.push_str(&isolation_matrix(rows));
    h.push_str("<h2>What each choice buys or costs</h2>\n<ul>\n");
    for r in rows {
        let _ = writeln!(
            h,
            "<li><b>{}</b>: {}</li>",
            esc(&r.full_label()),
            esc(&r.explanation)
        );
    }
    h.push_str("</ul>\n<h2>Notes</h2>\n<ul>\n");
    for n in NOTES {
        let _ = writeln!(h, "<li>{}</li>", esc(n));
    }
    for r in rows.iter().filter(|r| !r.disk.is_empty()) {
        let parts: Vec<String> = r
            .disk
            .iter()
            .map(|p| format!("{} {} ({})", p.what, p.path, fmt_bytes(Some(p.bytes))))
            .collect();
        let _ = writeln!(
            h,
            "<li>disk of {}: {}</li>",
            esc(&r.full_label()),
            esc(&parts.join(", "))
        );
    }
    h.push_str("</ul>\n</body></html>\n");
    h
}

fn numbers_table(rows: &[Row]) -> String {
    let mut h = String::from(
        "<h2>Numbers</h2>\n<table><tr><th>runtime</th><th>startup ms median (min-max)</th>\
         <th>first output ms</th><th>x runc</th><th>peak RSS</th><th>disk</th>\
         <th>failed runs</th></tr>\n",
    );
    for r in rows {
        if !r.available {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td colspan=\"6\" class=\"na\">unavailable: {}</td></tr>",
                esc(&r.full_label()),
                esc(r.error.as_deref().unwrap_or("did not run"))
            );
            continue;
        }
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            esc(&r.full_label()),
            esc(&super::render::fmt_stats(&r.startup_ms)),
            esc(&super::render::fmt_stats(&r.first_output_ms)),
            r.ratio_to_runc
                .map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            fmt_bytes(r.peak_rss_bytes),
            fmt_bytes(r.disk_bytes),
            r.first_failure
                .as_deref()
                .map(|f| format!(" title=\"{}\"", esc(f)))
                .unwrap_or_default(),
            r.failed_cell()
        );
    }
    h.push_str("</table>\n");
    h
}

/// Runtimes down, isolation facts across; green where the workload is kept from the host.
fn isolation_matrix(rows: &[Row]) -> String {
    let mut h = String::from(
        "<h2>Isolation matrix</h2>\n<table><tr><th>runtime</th><th>shares host kernel</th>\
         <th>host pids visible</th><th>capabilities</th><th>seccomp</th>\
         <th>syscalls reachable</th><th>distinct host syscalls</th></tr>\n",
    );
    let yes_no = |v: Option<bool>, good_when: bool| match v {
        Some(b) => format!(
            "<td class=\"{}\">{}</td>",
            if b == good_when { "good" } else { "bad" },
            if b { "yes" } else { "no" }
        ),
        None => "<td class=\"na\">?</td>".into(),
    };
    let plain = |v: Option<String>| match v {
        Some(s) => format!("<td>{}</td>", esc(&s)),
        None => "<td class=\"na\">?</td>".into(),
    };
    for r in rows {
        if !r.available {
            continue;
        }
        let i = &r.isolation;
        let host_sys = match &i.host_syscalls {
            Measured::Value(v) => format!("<td>{v}</td>"),
            Measured::NotAvailable(why) => format!("<td class=\"na\">{}</td>", esc(why)),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td>{}{}{}{}{}{}</tr>",
            esc(&r.full_label()),
            yes_no(i.shared_kernel, false),
            yes_no(i.host_pids_visible, false),
            caps_cell(i),
            plain(i.seccomp.clone()),
            plain(i.syscalls_reachable.map(|n| n.to_string())),
            host_sys
        );
        // A guest that escapes its VMM lands in one of these, on the host kernel.
        for p in &r.host_processes {
            let mut caps = format!("{} ({} bounding)", p.capabilities, p.bounding_capabilities);
            if p.no_new_privs {
                caps.push_str(", no_new_privs");
            }
            let _ = writeln!(
                h,
                "<tr><td>{} host process {}</td>{}{}<td class=\"{}\">{}</td>{}\
                 <td class=\"na\">-</td><td class=\"na\">-</td></tr>",
                esc(&r.full_label()),
                esc(&p.name),
                yes_no(Some(true), false),
                yes_no(Some(!p.own_namespaces.iter().any(|n| n == "pid")), false),
                if p.capabilities == 0 { "good" } else { "bad" },
                esc(&caps),
                plain(Some(p.seccomp.clone())),
            );
        }
    }
    h.push_str("</table>\n");
    h
}

/// The count, with the names inline when there are few and as a tooltip otherwise.
fn caps_cell(i: &super::row::Isolation) -> String {
    match i.capabilities {
        None => "<td class=\"na\">?</td>".into(),
        Some(c) if i.capability_names.is_empty() => format!("<td>{c}</td>"),
        Some(c) if i.capability_names.len() <= 8 => {
            format!("<td>{c}: {}</td>", esc(&i.capability_names.join(", ")))
        }
        Some(c) => format!(
            "<td title=\"{}\">{c} (hover for the list)</td>",
            esc(&i.capability_names.join(", "))
        ),
    }
}

/// A horizontal bar chart as inline SVG.
fn chart(title: &str, unit: &str, bars: &[Bar], log: bool) -> String {
    let mut h = format!("<h2>{}</h2>\n", esc(title));
    if bars.is_empty() {
        h.push_str("<p class=\"na\">no data</p>\n");
        return h;
    }
    let (label_w, plot_w, bar_h, gap, top, text_w) = (170.0, 600.0, 22.0, 10.0, 24.0, 110.0);
    let width = label_w + plot_w + text_w;
    let height = top + bars.len() as f64 * (bar_h + gap) + 10.0;
    let hi = bars
        .iter()
        .map(|b| b.range.map_or(b.value, |r| r.1).max(b.value))
        .fold(0.0f64, f64::max);
    let lo_pos = bars
        .iter()
        .map(|b| b.range.map_or(b.value, |r| r.0).min(b.value))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    // Log axis from the decade below the smallest value to the decade above the largest.
    let (lmin, lmax) = if lo_pos.is_finite() {
        (
            lo_pos.log10().floor(),
            hi.log10().ceil().max(lo_pos.log10().floor() + 1.0),
        )
    } else {
        (0.0, 1.0)
    };
    let lin_max = if hi > 0.0 { nice_ceiling(hi) } else { 1.0 };
    let x = |v: f64| -> f64 {
        let frac = if log {
            if v <= 0.0 {
                0.0
            } else {
                (v.log10() - lmin) / (lmax - lmin)
            }
        } else {
            v / lin_max
        };
        label_w + frac.clamp(0.0, 1.0) * plot_w
    };
    let _ = writeln!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    // Grid lines with their values.
    let ticks: Vec<f64> = if log {
        (lmin as i32..=lmax as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=4).map(|i| lin_max * i as f64 / 4.0).collect()
    };
    for t in ticks {
        let tx = x(t);
        let _ = writeln!(
            h,
            "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{tx:.1}\" y=\"14\" text-anchor=\"middle\" fill=\"#666\">{} {unit}</text>",
            height - 6.0,
            trim_num(t)
        );
    }
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        let x0 = label_w;
        let x1 = x(b.value).max(x0 + 1.0);
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{x0}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar_h}\" fill=\"#4a7ab5\">\
             <title>{}: {}</title></rect>",
            label_w - 8.0,
            y + bar_h * 0.7,
            esc(&b.label),
            x1 - x0,
            esc(&b.label),
            esc(&b.text)
        );
        let mut text_x = x1;
        if let Some((mn, mx)) = b.range {
            let (a, c, mid) = (x(mn), x(mx), y + bar_h / 2.0);
            let _ = writeln!(
                h,
                "<line x1=\"{a:.1}\" y1=\"{mid:.1}\" x2=\"{c:.1}\" y2=\"{mid:.1}\" stroke=\"#222\"/>\
                 <line x1=\"{a:.1}\" y1=\"{:.1}\" x2=\"{a:.1}\" y2=\"{:.1}\" stroke=\"#222\"/>\
                 <line x1=\"{c:.1}\" y1=\"{:.1}\" x2=\"{c:.1}\" y2=\"{:.1}\" stroke=\"#222\"/>",
                y + 5.0,
                y + bar_h - 5.0,
                y + 5.0,
                y + bar_h - 5.0
            );
            text_x = text_x.max(c);
        }
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            text_x + 6.0,
            y + bar_h * 0.7,
            esc(&b.text)
        );
    }
    h.push_str("</svg>\n");
    h
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn trim_num(v: f64) -> String {
    if v >= 1.0 && v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::render::tests::sample_rows;

    #[test]
    fn html_is_self_contained_with_charts_and_matrix() {
        let rows = sample_rows();
        let h = html(&rows, "host <x>");
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("host &lt;x&gt;"));
        assert_eq!(h.matches("<svg ").count(), 4);
        assert!(!h.contains("src=\"http"), "no external resources");
        assert!(h.contains("Isolation matrix"));
        // Each microVM host process has its own row.
        assert!(
            h.contains(
                "<tr><td>isobox/microvm (qemu, tcg) host process qemu-system-x86</td>\
             <td class=\"bad\">yes</td><td class=\"bad\">yes</td>\
             <td class=\"good\">0 (0 bounding), no_new_privs</td><td>filter</td>"
            ),
            "{h}"
        );
        // The unavailable runtime appears in the numbers, not in the charts or matrix.
        assert!(h.contains("unavailable: cgroups in hybrid mode not supported"));
        assert_eq!(h.matches("<title>crun").count(), 0);
        assert!(h.contains("isobox/microvm (qemu, tcg)"));
        // Every bar of the startup chart is present.
        assert!(h.contains("<title>runc: 20.0 ms</title>"));
        // Bars carry the hypervisor and accelerator: two microVM rows stay apart.
        assert!(h.contains("<title>isobox/microvm (qemu, tcg): 2100 ms</title>"));
    }

    #[test]
    fn writes_index_html() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir.path().join("r"), &sample_rows(), "h").unwrap();
        assert!(fs::read_to_string(path).unwrap().contains("</html>"));
    }

    #[test]
    fn long_capability_lists_become_tooltips() {
        let mut iso = crate::compare::row::Isolation {
            capabilities: Some(2),
            capability_names: vec!["cap_kill".into(), "cap_chown".into()],
            ..Default::default()
        };
        assert_eq!(caps_cell(&iso), "<td>2: cap_kill, cap_chown</td>");
        iso.capability_names = (0..10).map(|i| format!("cap_{i}")).collect();
        iso.capabilities = Some(10);
        let cell = caps_cell(&iso);
        assert!(cell.starts_with("<td title=\"cap_0, cap_1"), "{cell}");
        assert!(cell.contains(">10 (hover"), "{cell}");
        iso.capabilities = None;
        assert!(caps_cell(&iso).contains('?'));
    }

    #[test]
    fn axis_helpers() {
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(trim_num(1000.0), "1000");
        assert_eq!(trim_num(0.1), "0.1");
        assert_eq!(esc("a&\"b"), "a&amp;&quot;b");
    }
}

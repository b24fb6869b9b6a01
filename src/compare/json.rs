//! `--json`: the rows as one JSON array, each object as `Row` serializes.

use anyhow::{Context, Result};

use super::row::Row;

pub fn render(rows: &[Row]) -> Result<String> {
    serde_json::to_string_pretty(rows).context("serializing the comparison as JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::render::tests::sample_rows;
    use serde_json::Value;

    #[test]
    fn json_has_the_documented_fields() {
        let text = render(&sample_rows()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let rows = v.as_array().unwrap();
        assert_eq!(rows.len(), 5);

        let c = &rows[0];
        assert_eq!(c["runtime"], "isobox");
        assert_eq!(c["backend"], "container");
        assert_eq!(c["available"], true);
        assert!(c.get("error").is_none());
        assert_eq!(c["startup_ms"]["median"], 12.5);
        assert_eq!(c["startup_ms"]["min"], 10.0);
        assert_eq!(c["first_output_ms"]["max"], 20.0);
        assert_eq!(c["ratio_to_runc"], 0.625);
        assert_eq!(c["peak_rss_bytes"], 3 * 1024 * 1024);
        assert_eq!(c["disk_bytes"], 5_000_000);
        let iso = &c["isolation"];
        assert_eq!(iso["shared_kernel"], true);
        assert_eq!(iso["host_pids_visible"], false);
        assert_eq!(iso["capabilities"], 3);
        assert_eq!(iso["seccomp"], "disabled");
        assert_eq!(iso["syscalls_reachable"], 320);
        assert_eq!(iso["host_syscalls"], 61);
        assert!(c["explanation"].as_str().unwrap().contains("host kernel"));

        let vm = &rows[1];
        assert_eq!(vm["hypervisor"], "qemu");
        assert_eq!(vm["accelerator"], "tcg");
        assert_eq!(vm["isolation"]["shared_kernel"], false);

        let crun = &rows[3];
        assert_eq!(crun["available"], false);
        assert_eq!(crun["error"], "cgroups in hybrid mode not supported");
        assert!(crun["startup_ms"].is_null());
        assert_eq!(
            crun["isolation"]["host_syscalls"],
            "n/a: runtime unavailable"
        );
    }
}

//! The matrix of one engine: every operation with every runtime, what was expected and what
//! happened, and the rule that judges it.

use crate::cells::{Outcome, CELLS};
use crate::engine::{Engine, Runtime};

pub struct Row {
    pub op: &'static str,
    pub results: Vec<(Runtime, Outcome)>,
}

pub struct Matrix {
    pub engine: &'static str,
    pub rows: Vec<Row>,
}

/// How a cell is judged.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    Bad(String),
}

impl Matrix {
    pub fn measure(engine: &dyn Engine) -> Matrix {
        let scratch = tempfile::tempdir().unwrap();
        let mut rows = Vec::new();
        for (i, cell) in CELLS.iter().enumerate() {
            let mut results = Vec::new();
            for rt in Runtime::ALL {
                let name = format!("c{i}-{}", rt.label().replace(' ', "-"));
                let started = std::time::Instant::now();
                let outcome = (cell.check)(engine, rt, &name, scratch.path());
                eprintln!(
                    "{} | {} | {}: {:?} ({:.1} s)",
                    engine.name(),
                    cell.op,
                    rt.label(),
                    outcome,
                    started.elapsed().as_secs_f64()
                );
                results.push((rt, outcome));
            }
            rows.push(Row {
                op: cell.op,
                results,
            });
        }
        Matrix {
            engine: engine.name(),
            rows,
        }
    }

    fn verdict(row: &Row, rt: Runtime, outcome: &Outcome) -> Verdict {
        let runc = &row.results[0].1;
        match (rt, outcome) {
            (_, Outcome::NotApplicable(_)) => Verdict::Ok,
            (Runtime::Runc, Outcome::Pass) => Verdict::Ok,
            (Runtime::Runc, Outcome::Fail(e)) => Verdict::Bad(format!(
                "fails with runc too, so the test is wrong here: {e}"
            )),
            (Runtime::Container, Outcome::Pass) => Verdict::Ok,
            (Runtime::Container, Outcome::Fail(e)) => Verdict::Bad(if *runc == Outcome::Pass {
                format!("passes with runc, fails with isobox: {e}")
            } else {
                e.clone()
            }),
            (Runtime::Microvm, Outcome::Pass) => Verdict::Ok,
            (Runtime::Microvm, Outcome::Fail(e)) => Verdict::Bad(e.clone()),
        }
    }

    fn cell_text(row: &Row, rt: Runtime, outcome: &Outcome) -> &'static str {
        match (Self::verdict(row, rt, outcome), outcome) {
            (_, Outcome::NotApplicable(_)) => "n/a",
            (Verdict::Ok, _) => "pass",
            (Verdict::Bad(_), _) => "FAIL",
        }
    }

    /// The table, then a line for every cell that is not a plain pass.
    pub fn render(&self) -> String {
        let mut s = format!("{:<24}", self.engine);
        for rt in Runtime::ALL {
            s.push_str(&format!(" {:<15}", rt.label()));
        }
        s.push('\n');
        for row in &self.rows {
            s.push_str(&format!("{:<24}", row.op));
            for (rt, o) in &row.results {
                s.push_str(&format!(" {:<15}", Self::cell_text(row, *rt, o)));
            }
            s.push('\n');
        }
        for row in &self.rows {
            for (rt, o) in &row.results {
                let why = match (Self::verdict(row, *rt, o), o) {
                    (_, Outcome::NotApplicable(why)) => why.to_string(),
                    (Verdict::Ok, _) => continue,
                    (Verdict::Bad(e), _) => e,
                };
                s.push_str(&format!("  {} / {}: {why}\n", row.op, rt.label()));
            }
        }
        s
    }

    pub fn report(&self) {
        let text = self.render();
        println!("{text}");
        let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("engines-{}.txt", self.engine));
        let _ = std::fs::write(file, &text);
    }

    pub fn assert_as_expected(&self) {
        let bad: Vec<String> = self
            .rows
            .iter()
            .flat_map(|row| {
                row.results
                    .iter()
                    .filter_map(move |(rt, o)| match Self::verdict(row, *rt, o) {
                        Verdict::Bad(e) => Some(format!("{} / {}: {e}", row.op, rt.label())),
                        _ => None,
                    })
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{}: {} cell(s) not as expected:\n{}\n\n{}",
            self.engine,
            bad.len(),
            bad.join("\n"),
            self.render()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: &'static str, runc: Outcome, ours: Outcome, vm: Outcome) -> Row {
        Row {
            op,
            results: vec![
                (Runtime::Runc, runc),
                (Runtime::Container, ours),
                (Runtime::Microvm, vm),
            ],
        }
    }

    #[test]
    fn every_microvm_cell_is_judged_on_its_own_outcome() {
        // The user network was marked expected-to-fail until the microVM had a network.
        for op in ["user network", "volume"] {
            let r = row(op, Outcome::Pass, Outcome::Pass, Outcome::Fail("x".into()));
            assert!(matches!(
                Matrix::verdict(&r, Runtime::Microvm, &r.results[2].1),
                Verdict::Bad(_)
            ));
            let r = row(op, Outcome::Pass, Outcome::Pass, Outcome::Pass);
            assert_eq!(
                Matrix::verdict(&r, Runtime::Microvm, &r.results[2].1),
                Verdict::Ok
            );
        }
    }

    #[test]
    fn the_container_backend_has_no_expected_failures() {
        let r = row(
            "volume",
            Outcome::Pass,
            Outcome::Fail("x".into()),
            Outcome::Pass,
        );
        assert!(matches!(
            Matrix::verdict(&r, Runtime::Container, &r.results[1].1),
            Verdict::Bad(_)
        ));
    }
}

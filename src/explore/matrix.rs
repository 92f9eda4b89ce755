//! The result of an exploration as a matrix: one row per call (the error path's calls under
//! the call whose fault revealed them), one column per fault class.

use std::collections::HashMap;

use super::calls::{CallId, Recorded};
use super::class::FaultClass;
use super::plan::{Injection, Outcome, Plan};

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// The class does not apply to the call (no `cut` for a PUT).
    NotApplicable,
    /// Run as point `number`.
    Ran { number: usize, outcome: Outcome },
    /// Not run: equivalent to point `like`, whose outcome it is taken to have.
    Skipped { like: usize, outcome: Option<Outcome> },
    /// Not run: the budget (`--max-runs`, `--time`) ran out first.
    NotRun,
}

impl Cell {
    pub fn text(&self) -> String {
        match self {
            Cell::NotApplicable => "·".into(),
            Cell::Ran { outcome, .. } => outcome.word().into(),
            Cell::Skipped { like, outcome } => match outcome {
                Some(o) => format!("={like} {}", o.word()),
                None => format!("={like}"),
            },
            Cell::NotRun => "not run".into(),
        }
    }
}

/// One row: a call, after the faults that revealed it (none for the baseline's calls).
#[derive(Debug, Clone)]
pub struct Row {
    pub call: CallId,
    pub after: Vec<(CallId, FaultClass)>,
    pub cells: Vec<Cell>,
}

impl Row {
    pub fn label(&self) -> String {
        match self.after.last() {
            None => self.call.to_string(),
            Some((call, class)) => format!("  └ {} (under {call} × {class})", self.call),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matrix {
    pub columns: Vec<FaultClass>,
    pub rows: Vec<Row>,
}

impl Matrix {
    /// The matrix of `plan`, whose baseline was `baseline`; `unrun` are the points the budget
    /// left in the frontier.
    pub fn of(plan: &Plan, baseline: &[Recorded], unrun: &[Vec<Injection>]) -> Matrix {
        let columns = plan.classes().to_vec();
        let mut rows: Vec<Row> = Vec::new();
        let mut index: HashMap<(Vec<(CallId, FaultClass)>, CallId), usize> = HashMap::new();
        for call in baseline {
            index.insert((Vec::new(), call.id.clone()), rows.len());
            rows.push(Row {
                call: call.id.clone(),
                after: Vec::new(),
                cells: columns
                    .iter()
                    .map(|c| {
                        if c.applies_to(call) {
                            Cell::NotRun
                        } else {
                            Cell::NotApplicable
                        }
                    })
                    .collect(),
            });
        }
        let mut place = |faults: &[Injection], cell: Cell| {
            let (own, before) = faults.split_last().expect("a point has a fault");
            let after: Vec<(CallId, FaultClass)> = before.iter().map(|f| (f.call.clone(), f.class)).collect();
            let at = *index.entry((after.clone(), own.call.clone())).or_insert_with(|| {
                rows.push(Row {
                    call: own.call.clone(),
                    after,
                    cells: vec![Cell::NotApplicable; columns.len()],
                });
                rows.len() - 1
            });
            if let Some(column) = columns.iter().position(|c| *c == own.class) {
                rows[at].cells[column] = cell;
            }
        };
        for done in &plan.done {
            place(
                &done.point.faults,
                Cell::Ran {
                    number: done.point.number,
                    outcome: done.outcome.clone(),
                },
            );
        }
        for skipped in &plan.skipped {
            place(
                &skipped.faults,
                Cell::Skipped {
                    like: skipped.like,
                    outcome: plan.outcome_of(skipped.like).cloned(),
                },
            );
        }
        for faults in unrun {
            place(faults, Cell::NotRun);
        }
        // The error path's rows go under the baseline call whose fault revealed them.
        let position: HashMap<CallId, usize> = baseline.iter().enumerate().map(|(i, c)| (c.id.clone(), i)).collect();
        let order = |r: &Row| {
            let root = r.after.first().map_or(&r.call, |(c, _)| c);
            (position.get(root).copied().unwrap_or(usize::MAX), r.after.len())
        };
        rows.sort_by_key(order);
        Matrix { columns, rows }
    }

    /// The matrix as a terminal table.
    pub fn text(&self) -> String {
        let labels: Vec<String> = self.rows.iter().map(Row::label).collect();
        let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4).max(4);
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .map(|r| r.cells[i].text().chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(c.as_str().len())
            })
            .collect();
        let mut out = format!("{:<label_width$}", "call");
        for (c, w) in self.columns.iter().zip(&widths) {
            out.push_str(&format!("  {:<w$}", c.as_str()));
        }
        out.push('\n');
        for (row, label) in self.rows.iter().zip(&labels) {
            let pad = label_width - label.chars().count();
            out.push_str(label);
            out.push_str(&" ".repeat(pad));
            for (cell, w) in row.cells.iter().zip(&widths) {
                let text = cell.text();
                let pad = w - text.chars().count();
                out.push_str("  ");
                out.push_str(&text);
                out.push_str(&" ".repeat(pad));
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::plan::Outcome;

    #[test]
    fn cells_show_run_skipped_and_inapplicable_points() {
        let call = |op: &str, key: &str, bytes| Recorded {
            id: CallId {
                operation: op.into(),
                bucket: "b".into(),
                key: key.into(),
                nth: 1,
            },
            outcome: "200".into(),
            succeeded: true,
            bytes,
            faulted_by: None,
        };
        let baseline = vec![call("PutObject", "k", None), call("GetObject", "k", Some(10))];
        let mut plan = Plan::new(&baseline, &[FaultClass::Transient, FaultClass::Cut], 2);
        let a = plan.next_point().unwrap();
        plan.finish(a, Outcome::Survived, 0.1, &baseline);
        let b = plan.next_point().unwrap();
        plan.finish(
            b,
            Outcome::TestFailed { code: Some(1) },
            0.1,
            &[baseline[0].clone(), call("DeleteObject", "k", None)],
        );
        let matrix = Matrix::of(&plan, &baseline, &[]);
        let text = matrix.text();
        assert!(text.starts_with("call"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("PutObject b/k #1") && lines[1].contains("survived") && lines[1].contains('·'),
            "{text}"
        );
        assert!(
            lines[2].starts_with("GetObject b/k #1")
                && lines[2].contains("TEST FAILED")
                && lines[2].contains("not run"),
            "{text}"
        );
        assert_eq!(lines.len(), 3, "{text}");
        let unrun = plan.leftover();
        assert_eq!(
            unrun.len(),
            2,
            "GetObject × cut, and the DeleteObject the failure revealed"
        );
        let text = Matrix::of(&plan, &baseline, &unrun).text();
        let row = text.lines().nth(3).unwrap();
        assert!(
            row.starts_with("  └ DeleteObject b/k #1 (under GetObject b/k #1 × transient)  not run"),
            "{text}"
        );
    }
}

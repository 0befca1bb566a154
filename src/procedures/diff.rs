//! A small unified line diff (longest common subsequence, three lines of context) for the
//! drift report. Definitions are tens to hundreds of lines, so the quadratic table is
//! cheap; past a size bound the diff degrades to "all removed, all added".

const CONTEXT: usize = 3;
const MAX_CELLS: usize = 4_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Same,
    Del,
    Add,
}

/// `---`/`+++` headers named `from_name`/`to_name`, then `@@` hunks; empty when equal.
pub fn unified(from: &str, to: &str, from_name: &str, to_name: &str) -> String {
    let a: Vec<&str> = from.lines().collect();
    let b: Vec<&str> = to.lines().collect();
    let ops = edit_script(&a, &b);
    if ops.iter().all(|(op, ..)| *op == Op::Same) {
        return String::new();
    }
    let mut out = format!("--- {from_name}\n+++ {to_name}\n");
    let mut i = 0;
    while i < ops.len() {
        let Some(first) = (i..ops.len()).find(|&k| ops[k].0 != Op::Same) else {
            break;
        };
        let start = first.saturating_sub(CONTEXT);
        // Extend the hunk while changes are at most 2 × CONTEXT unchanged lines apart.
        let mut end = first;
        let mut k = first;
        while k < ops.len() {
            if ops[k].0 != Op::Same {
                end = k;
                k += 1;
                continue;
            }
            let run = (k..ops.len()).take_while(|&j| ops[j].0 == Op::Same).count();
            if k + run >= ops.len() || run > 2 * CONTEXT {
                break;
            }
            k += run;
        }
        let stop = (end + 1 + CONTEXT).min(ops.len());
        hunk(&mut out, &ops[start..stop], &a, &b);
        i = stop;
    }
    out
}

fn hunk(out: &mut String, ops: &[(Op, usize, usize)], a: &[&str], b: &[&str]) {
    let (a0, b0) = (ops[0].1, ops[0].2);
    let a_len = ops.iter().filter(|o| o.0 != Op::Add).count();
    let b_len = ops.iter().filter(|o| o.0 != Op::Del).count();
    out.push_str(&format!(
        "@@ -{},{a_len} +{},{b_len} @@\n",
        a0 + usize::from(a_len > 0),
        b0 + usize::from(b_len > 0)
    ));
    for &(op, i, j) in ops {
        let (mark, line) = match op {
            Op::Same => (' ', a[i]),
            Op::Del => ('-', a[i]),
            Op::Add => ('+', b[j]),
        };
        out.push(mark);
        out.push_str(line);
        out.push('\n');
    }
}

/// How a row of a side-by-side diff differs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RowKind {
    /// The same line on both sides.
    Same,
    /// A line on the left replaced by the line on the right.
    Changed,
    /// A line only on the left.
    Removed,
    /// A line only on the right.
    Added,
}

/// One row of a side-by-side diff: a line (1-based number, text) on either side or both.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Row<'a> {
    pub kind: RowKind,
    pub left: Option<(usize, &'a str)>,
    pub right: Option<(usize, &'a str)>,
}

/// Every line of `from` and `to` aligned in rows, from the same edit script as
/// [`unified`]: a run of removed lines followed by added ones is paired row by row as
/// changed, the surplus of either side stands alone.
pub fn side_by_side<'a>(from: &'a str, to: &'a str) -> Vec<Row<'a>> {
    let a: Vec<&str> = from.lines().collect();
    let b: Vec<&str> = to.lines().collect();
    let ops = edit_script(&a, &b);
    let mut rows = Vec::with_capacity(ops.len());
    let mut k = 0;
    while k < ops.len() {
        let (op, i, j) = ops[k];
        if op == Op::Same {
            rows.push(Row {
                kind: RowKind::Same,
                left: Some((i + 1, a[i])),
                right: Some((j + 1, b[j])),
            });
            k += 1;
            continue;
        }
        let dels: Vec<usize> = ops[k..]
            .iter()
            .take_while(|o| o.0 == Op::Del)
            .map(|o| o.1)
            .collect();
        let adds: Vec<usize> = ops[k + dels.len()..]
            .iter()
            .take_while(|o| o.0 == Op::Add)
            .map(|o| o.2)
            .collect();
        k += dels.len() + adds.len();
        for n in 0..dels.len().max(adds.len()) {
            let left = dels.get(n).map(|&i| (i + 1, a[i]));
            let right = adds.get(n).map(|&j| (j + 1, b[j]));
            let kind = match (left, right) {
                (Some(_), Some(_)) => RowKind::Changed,
                (Some(_), None) => RowKind::Removed,
                _ => RowKind::Added,
            };
            rows.push(Row { kind, left, right });
        }
    }
    rows
}

/// Each step with the positions in `a` and `b` it is at.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<(Op, usize, usize)> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > MAX_CELLS {
        let dels = (0..n).map(|i| (Op::Del, i, 0));
        return dels.chain((0..m).map(|j| (Op::Add, n, j))).collect();
    }
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((Op::Same, i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions before additions, as diff(1) prints them.
            ops.push((Op::Del, i, j));
            i += 1;
        } else {
            ops.push((Op::Add, i, j));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn shows_a_changed_line_with_context() {
        let from = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let to = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified(from, to, "deployed", "live"),
            "--- deployed\n+++ live\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn side_by_side_pairs_replaced_lines_and_keeps_the_rest_alone() {
        let rows = side_by_side("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n");
        let kinds: Vec<RowKind> = rows.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                RowKind::Same,
                RowKind::Changed,
                RowKind::Same,
                RowKind::Same,
                RowKind::Added
            ]
        );
        assert_eq!(rows[1].left, Some((2, "b")));
        assert_eq!(rows[1].right, Some((2, "B")));
        assert_eq!(rows[4].left, None);
        assert_eq!(rows[4].right, Some((5, "e")));
        let gone = side_by_side("x\ny\n", "z\n");
        assert_eq!(
            gone.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [RowKind::Changed, RowKind::Removed]
        );
        assert!(side_by_side("", "").is_empty());
    }

    #[test]
    fn far_apart_changes_make_two_hunks_and_removal_of_everything_works() {
        let from: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let to = from.replace("2\n", "two\n").replace("19\n", "nineteen\n");
        let d = unified(&from, &to, "a", "b");
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        let gone = unified("x\ny\n", "", "a", "b");
        assert_eq!(gone, "--- a\n+++ b\n@@ -1,2 +0,0 @@\n-x\n-y\n");
    }
}

//! Shortest path on a grid with walls: `S` to `G` with moves `U D L R`.
//!
//! Grid rows use `.` for open cells, `#` for walls. Answer: the moves, such as `RRDDL`
//! (spaces and commas ignored). Reward: 1 for a shortest path; `shortest / length` for a valid but
//! longer path (partial credit); 0 for a path that hits a wall, leaves the grid or stops short.
//! The diagnosis names the first move that is invalid or leaves every shortest path, with the
//! moves that would have stayed on one.
//!
//! Knobs: `width`, `height` (2..=30, default `level + 4`, `level` default 1), `walls` percent
//! (0..=60, default 25), `format`.

use std::collections::VecDeque;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::answer::{AnswerFormat, find_answer};
use super::{Difficulty, PromptStyle, TaskFamily};
use crate::error::{Error, Result};
use crate::verdict::{Diagnosis, DiagnosisKind, FirstError, Verdict};

/// A grid shortest-path problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortestPathProblem {
    /// Grid rows: `.` open, `#` wall, `S` start, `G` goal.
    pub grid: Vec<String>,
    /// Length of a shortest path.
    pub shortest: usize,
    /// How the final answer is marked.
    #[serde(default)]
    pub format: AnswerFormat,
    /// What the user message says (chat or plain).
    #[serde(default)]
    pub prompt_style: PromptStyle,
}

const MOVES: [(char, isize, isize); 4] = [('U', -1, 0), ('D', 1, 0), ('L', 0, -1), ('R', 0, 1)];

impl ShortestPathProblem {
    /// Fails on a grid the task does not define: ragged rows, a cell other than `. # S G`, not
    /// exactly one `S` and one `G`, `G` unreachable from `S`, or `shortest` not the length of a
    /// shortest path.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| {
            Err(Error::InvalidProblem {
                task: TaskFamily::ShortestPath,
                message,
            })
        };
        let width = self.grid.first().map_or(0, String::len);
        if width == 0 {
            return invalid("the grid is empty".into());
        }
        for (r, row) in self.grid.iter().enumerate() {
            if row.len() != width {
                return invalid(format!(
                    "row {r} has {} cells, row 0 has {width}",
                    row.len()
                ));
            }
            if let Some(c) = row.bytes().position(|b| !b".#SG".contains(&b)) {
                return invalid(format!("cell ({r}, {c}) is not one of . # S G"));
            }
        }
        for mark in ['S', 'G'] {
            let n = self
                .grid
                .iter()
                .flat_map(|r| r.chars())
                .filter(|c| *c == mark)
                .count();
            if n != 1 {
                return invalid(format!("the grid has {n} {mark} cells, not exactly one"));
            }
        }
        let dist = self.distances_to_goal();
        let (sr, sc) = self.find(b'S').unwrap_or((0, 0));
        match dist[sr as usize][sc as usize] {
            usize::MAX => invalid("G is unreachable from S".into()),
            d if d != self.shortest => invalid(format!(
                "shortest is {}, but a shortest path from S to G has {d} moves",
                self.shortest
            )),
            _ => Ok(()),
        }
    }

    fn cell(&self, r: isize, c: isize) -> Option<u8> {
        if r < 0 || c < 0 {
            return None;
        }
        self.grid
            .get(r as usize)
            .and_then(|row| row.as_bytes().get(c as usize))
            .copied()
    }

    fn find(&self, ch: u8) -> Option<(isize, isize)> {
        self.grid.iter().enumerate().find_map(|(r, row)| {
            row.bytes()
                .position(|b| b == ch)
                .map(|c| (r as isize, c as isize))
        })
    }

    /// Distance from every cell to `G` (`usize::MAX` when unreachable).
    pub fn distances_to_goal(&self) -> Vec<Vec<usize>> {
        let h = self.grid.len();
        let w = self.grid.iter().map(String::len).max().unwrap_or(0);
        let mut dist = vec![vec![usize::MAX; w]; h];
        let Some((gr, gc)) = self.find(b'G') else {
            return dist;
        };
        dist[gr as usize][gc as usize] = 0;
        let mut q = VecDeque::from([(gr, gc)]);
        while let Some((r, c)) = q.pop_front() {
            let d = dist[r as usize][c as usize];
            for (_, dr, dc) in MOVES {
                let (nr, nc) = (r + dr, c + dc);
                if matches!(self.cell(nr, nc), Some(b'.' | b'S'))
                    && dist[nr as usize][nc as usize] == usize::MAX
                {
                    dist[nr as usize][nc as usize] = d + 1;
                    q.push_back((nr, nc));
                }
            }
        }
        dist
    }

    /// A shortest path (moves tried in the order `U D L R`).
    pub fn reference_path(&self) -> String {
        let dist = self.distances_to_goal();
        let Some((mut r, mut c)) = self.find(b'S') else {
            return String::new();
        };
        let mut out = String::new();
        while dist[r as usize][c as usize] > 0 && dist[r as usize][c as usize] != usize::MAX {
            let d = dist[r as usize][c as usize];
            let Some((m, dr, dc)) = MOVES.into_iter().find(|(_, dr, dc)| {
                let (nr, nc) = (r + dr, c + dc);
                self.cell(nr, nc).is_some() && dist[nr as usize][nc as usize] == d - 1
            }) else {
                break;
            };
            out.push(m);
            r += dr;
            c += dc;
        }
        out
    }

    /// Plain prompt.
    pub fn prompt(&self) -> String {
        format!("grid:\n{}\npath from S to G:", self.grid.join("\n"))
    }

    /// Chat prompt.
    pub fn chat_prompt(&self) -> String {
        format!(
            "Find a shortest path from S to G in this grid ('#' is a wall, '.' is open). Moves are U (up), D (down), \
             L (left), R (right). Give the path as a string of moves such as RRDL.\n\n{}\n\n{}",
            self.grid.join("\n"),
            self.format.instruction()
        )
    }

    /// Reference solution: the marked shortest path.
    pub fn solution(&self) -> String {
        self.format.wrap(&self.reference_path())
    }

    /// Verifies a response.
    pub fn verify(&self, response: &str) -> Verdict {
        let (text, range) = match find_answer(response, self.format) {
            Ok(x) => x,
            Err(v) => return *v,
        };
        let moves: Vec<(usize, char)> = text
            .char_indices()
            .filter(|(_, c)| !c.is_whitespace() && *c != ',')
            .map(|(i, c)| (i, c.to_ascii_uppercase()))
            .collect();
        if let Some((i, c)) = moves
            .iter()
            .find(|(_, c)| !matches!(c, 'U' | 'D' | 'L' | 'R'))
        {
            return Verdict::malformed(
                Diagnosis::new(
                    DiagnosisKind::BadFormat,
                    format!("{c:?} is not a move (use U, D, L, R)"),
                )
                .with_first_error(FirstError {
                    step: 0,
                    span: range.start + i..range.start + i + c.len_utf8(),
                    expected: "U, D, L or R".into(),
                    found: c.to_string(),
                }),
            );
        }
        let dist = self.distances_to_goal();
        let Some((mut r, mut c)) = self.find(b'S') else {
            return Verdict::malformed(Diagnosis::new(
                DiagnosisKind::BadFormat,
                "the grid has no start",
            ));
        };
        let good_moves = |r: isize, c: isize| -> String {
            let d = dist[r as usize][c as usize];
            MOVES
                .iter()
                .filter(|(_, dr, dc)| {
                    let (nr, nc) = (r + dr, c + dc);
                    self.cell(nr, nc).is_some() && d > 0 && dist[nr as usize][nc as usize] == d - 1
                })
                .map(|(m, ..)| m.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let mut first_detour: Option<FirstError> = None;
        for (step, (i, m)) in moves.iter().enumerate() {
            let span = range.start + i..range.start + i + 1;
            let (_, dr, dc) = MOVES
                .iter()
                .copied()
                .find(|(k, ..)| k == m)
                .unwrap_or(('U', -1, 0));
            let (nr, nc) = (r + dr, c + dc);
            match self.cell(nr, nc) {
                Some(b'#') | None => {
                    let what = if self.cell(nr, nc).is_none() {
                        "leaves the grid"
                    } else {
                        "hits a wall"
                    };
                    return Verdict::wrong(
                        Diagnosis::new(
                            DiagnosisKind::WrongStep,
                            format!("move {step} ({m}) {what}"),
                        )
                        .with_first_error(FirstError {
                            step,
                            span,
                            expected: good_moves(r, c),
                            found: m.to_string(),
                        }),
                    );
                }
                _ => {}
            }
            if first_detour.is_none()
                && dist[nr as usize][nc as usize].saturating_add(1) != dist[r as usize][c as usize]
            {
                first_detour = Some(FirstError {
                    step,
                    span,
                    expected: good_moves(r, c),
                    found: m.to_string(),
                });
            }
            r = nr;
            c = nc;
        }
        if self.cell(r, c) != Some(b'G') {
            return Verdict::wrong(
                Diagnosis::new(
                    DiagnosisKind::WrongAnswer,
                    format!("the path ends at row {r}, column {c}, not at G"),
                )
                .with_first_error(FirstError {
                    step: moves.len(),
                    span: range.end..range.end,
                    expected: good_moves(r, c),
                    found: "end of path".into(),
                }),
            );
        }
        if moves.len() == self.shortest {
            return Verdict::correct("a shortest path");
        }
        let mut d = Diagnosis::new(
            DiagnosisKind::Partial,
            format!(
                "a valid path of length {}, but the shortest has length {}",
                moves.len(),
                self.shortest
            ),
        );
        d.first_error = first_detour;
        Verdict::partial(self.shortest as f32 / moves.len().max(1) as f32, d)
    }
}

/// Generates one problem (see the module documentation for the knobs).
pub fn generate(rng: &mut ChaCha8Rng, d: &Difficulty) -> Result<ShortestPathProblem> {
    d.check_known(TaskFamily::ShortestPath, &["width", "height", "walls"])?;
    let level = d.int("level", 1, 0..=26)?;
    let w = d.int("width", level + 4, 2..=30)? as usize;
    let h = d.int("height", level + 4, 2..=30)? as usize;
    let walls = d.int("walls", 25, 0..=60)? as f64 / 100.0;
    let format = d.format()?;
    let prompt_style = d.prompt_style()?;
    for _attempt in 0..500 {
        let mut cells: Vec<Vec<u8>> = (0..h)
            .map(|_| {
                (0..w)
                    .map(|_| if rng.random_bool(walls) { b'#' } else { b'.' })
                    .collect()
            })
            .collect();
        let s = (rng.random_range(0..h), rng.random_range(0..w));
        let g = (rng.random_range(0..h), rng.random_range(0..w));
        if s == g {
            continue;
        }
        cells[s.0][s.1] = b'S';
        cells[g.0][g.1] = b'G';
        let grid: Vec<String> = cells
            .into_iter()
            .map(|r| String::from_utf8(r).unwrap_or_default())
            .collect();
        let mut p = ShortestPathProblem {
            grid,
            shortest: 0,
            format,
            prompt_style,
        };
        let dist = p.distances_to_goal();
        let ds = dist[s.0][s.1];
        if ds != usize::MAX && ds >= 2 {
            p.shortest = ds;
            return Ok(p);
        }
    }
    Err(Error::InvalidOption(
        "could not generate a solvable grid; lower walls".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prob() -> ShortestPathProblem {
        ShortestPathProblem {
            grid: vec!["S..".into(), ".#.".into(), "..G".into()],
            shortest: 4,
            format: AnswerFormat::Tag,
            prompt_style: PromptStyle::Chat,
        }
    }

    #[test]
    fn verdicts() {
        let p = prob();
        assert!(p.verify(&p.solution()).correct);
        let v = p.verify("<answer>RDDR</answer>");
        assert_eq!(v.diagnosis.kind, DiagnosisKind::WrongStep);
        assert_eq!(v.diagnosis.first_error.unwrap().step, 1);
        let v = p.verify("<answer>RLRRDD</answer>");
        assert!((v.reward - 4.0 / 6.0).abs() < 1e-6);
        assert_eq!(v.diagnosis.first_error.unwrap().step, 1);
        assert_eq!(
            p.verify("<answer>RX</answer>").diagnosis.kind,
            DiagnosisKind::BadFormat
        );
        assert_eq!(
            p.verify("<answer>RR</answer>").diagnosis.kind,
            DiagnosisKind::WrongAnswer
        );
        // User-supplied grids may be ragged or have no route: still a verdict.
        let odd = ShortestPathProblem {
            grid: vec!["S".into(), "..#..G".into()],
            shortest: 3,
            format: AnswerFormat::Tag,
            prompt_style: PromptStyle::Chat,
        };
        assert!(!odd.verify("<answer>DRRRR</answer>").correct);
        assert!(!odd.verify("<answer>DR</answer>").correct);
    }
}

//! Large flow files read in pieces, so that memory stays flat.
//!
//! The TOML parser holds a whole document's tokens and tables at once: about 2 KiB per task,
//! 200 MB for a flow of 100,000 tasks, on top of the flow itself. A flow file that is mostly
//! `[[task]]` tables is therefore read as a *rest* document — the file with every task table
//! blanked out (spaces; newlines kept, so every byte keeps its offset and every line its
//! number) — and the task tables in consecutive runs of at most [`CHUNK`], each its own small
//! document whose offsets are shifted back by where the run starts.
//!
//! Only files the splitter reads unambiguously are split: no multi-line strings (a `[[task]]`
//! line could sit inside one), and no table headers under `task` (`[task.retry]` belongs to
//! the task before it). Anything else is parsed whole, as before.

/// The most task tables parsed as one document.
pub(super) const CHUNK: usize = 1000;

/// A file split for reading: the rest, and runs of task tables with their byte offsets.
pub(super) struct Split<'a> {
    /// The file with its task tables blanked out.
    pub rest: String,
    /// Runs of consecutive task tables: (offset in the file, text).
    pub runs: Vec<(usize, &'a str)>,
}

/// Splits `text` if it holds more than [`CHUNK`] task tables and can be split safely.
pub(super) fn split(text: &str) -> Option<Split<'_>> {
    if text.contains("'''") || text.contains("\"\"\"") {
        return None;
    }
    let headers = headers(text)?;
    let tasks = headers.iter().filter(|h| h.task).count();
    if tasks <= CHUNK {
        return None;
    }
    // Each header's table runs to the next header (or the end of the file).
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        if h.task {
            let end = headers.get(i + 1).map_or(text.len(), |n| n.start);
            blocks.push((h.start, end));
        }
    }
    let mut runs = Vec::new();
    let mut run: Option<(usize, usize, usize)> = None; // start, end, tasks
    for (start, end) in blocks {
        run = match run {
            Some((s, e, n)) if e == start && n < CHUNK => Some((s, end, n + 1)),
            Some((s, e, _)) => {
                runs.push((s, &text[s..e]));
                Some((start, end, 1))
            }
            None => Some((start, end, 1)),
        };
    }
    if let Some((s, e, _)) = run {
        runs.push((s, &text[s..e]));
    }
    let mut rest = text.as_bytes().to_vec();
    for &(s, t) in &runs {
        for b in &mut rest[s..s + t.len()] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes were replaced, by ASCII, whole characters at a time.
    let rest = String::from_utf8(rest).ok()?;
    Some(Split { rest, runs })
}

/// A table header: where its line starts, and whether it is a `[[task]]`.
struct Header {
    start: usize,
    task: bool,
}

/// The table headers of `text`, found by following brackets and strings; `None` if the file
/// has a header the splitter does not handle (`[task.x]`, `[[task.x]]`) or does not parse.
fn headers(text: &str) -> Option<Vec<Header>> {
    let mut out = Vec::new();
    // Open `[` and `{` of values (arrays, inline tables) spanning lines.
    let mut depth = 0usize;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_start();
        if depth == 0 && body.starts_with('[') {
            let array = body.starts_with("[[");
            let inner = if array { &body[2..] } else { &body[1..] };
            let close = if array { "]]" } else { "]" };
            let name = inner.split(close).next()?.trim();
            let under_task = name.strip_prefix("task").is_some_and(|r| {
                r.trim_start().starts_with('.') || r.trim_start().starts_with('"')
            }) || name.starts_with("\"task");
            if under_task {
                return None;
            }
            out.push(Header {
                start,
                task: array && name == "task",
            });
            continue;
        }
        depth = scan(line, depth)?;
    }
    (depth == 0).then_some(out)
}

/// Follows one line of values: strings, comments and the brackets of arrays and inline
/// tables; returns the depth at its end.
fn scan(line: &str, mut depth: usize) -> Option<usize> {
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            '"' => loop {
                match chars.next()? {
                    '\\' => {
                        chars.next()?;
                    }
                    '"' => break,
                    _ => {}
                }
            },
            '\'' => loop {
                if chars.next()? == '\'' {
                    break;
                }
            },
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    Some(depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(tasks: usize, between: &str) -> String {
        let mut f = String::from("name = \"f\"\n[inputs]\nx = { default = 1 }\n");
        for i in 0..tasks {
            f.push_str(&format!(
                "[[task]]\nname = \"t{i}\"\nrun = [\"sh\", \"-c\", 'echo \"[[task]]\" # not a header']\nenv = {{ A = \"[\" }}\n"
            ));
            if i == tasks / 2 {
                f.push_str(between);
            }
        }
        f
    }

    #[test]
    fn a_small_flow_is_not_split() {
        assert!(split(&flow(10, "")).is_none());
    }

    #[test]
    fn task_tables_are_cut_into_runs_and_blanked_in_the_rest() {
        let text = flow(
            2500,
            "[[group]]\nname = \"g\"\n[[group.task]]\nname = \"m\"\nrun = [\"true\"]\n",
        );
        let s = split(&text).expect("split");
        assert_eq!(s.rest.len(), text.len(), "offsets are kept");
        assert_eq!(
            s.rest.lines().count(),
            text.lines().count(),
            "lines are kept"
        );
        assert!(!s.rest.contains("[[task]]\n"));
        assert!(s.rest.contains("[[group]]") && s.rest.contains("[inputs]"));
        let tasks: usize = s
            .runs
            .iter()
            .map(|(_, t)| t.matches("[[task]]\nname").count())
            .sum();
        assert_eq!(tasks, 2500);
        assert!(s
            .runs
            .iter()
            .all(|(_, t)| t.matches("[[task]]\nname").count() <= CHUNK));
        for &(at, t) in &s.runs {
            assert_eq!(&text[at..at + t.len()], t);
        }
    }

    #[test]
    fn what_it_cannot_read_safely_is_not_split() {
        assert!(split(&flow(1500, "[task.retry]\nattempts = 2\n")).is_none());
        assert!(split(&flow(1500, "x = \"\"\"\n[[task]]\n\"\"\"\n")).is_none());
        // A multi-line array holding a line that starts with `[`.
        let text = flow(1500, "[[group]]\nname = \"g\"\nafter = [\n[\"a\"],\n]\n");
        assert!(headers(&text).is_some_and(|h| h.iter().filter(|h| !h.task).count() == 2));
    }
}

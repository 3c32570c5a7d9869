//! The one table format the reference documents use, read back: a header row, a `| --- |`
//! row, then one row per entry, each cell trimmed.

/// A table of a document: the heading it stands under, its header, its rows.
#[derive(Debug)]
pub struct Table {
    pub heading: String,
    pub header: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug)]
pub struct Row {
    /// 1-based line number, for messages.
    pub line: usize,
    pub cells: Vec<String>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split(" | ").map(|c| c.trim().to_owned()).collect()
}

/// Every table of `text`, with the nearest `#` heading above it.
pub fn tables(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut heading = String::new();
    let mut in_code = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_owned();
        } else if !in_code
            && line.starts_with('|')
            && lines.get(i + 1).is_some_and(|l| l.starts_with("| ---"))
        {
            let header = cells(line);
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].starts_with('|') {
                rows.push(Row {
                    line: i + 1,
                    cells: cells(lines[i]),
                });
                i += 1;
            }
            found.push(Table {
                heading: heading.clone(),
                header,
                rows,
            });
            continue;
        }
        i += 1;
    }
    found
}

/// `` `text` `` without its backticks, or None when the cell is not one code span.
pub fn code(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

#[test]
fn a_table_is_read_with_its_heading_and_a_table_in_a_code_block_is_not() {
    let text =
        "# One\n\n| a | b |\n| --- | --- |\n| `x` | y z |\n\n```\n| c | d |\n| --- | --- |\n```\n";
    let found = tables(text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].heading, "One");
    assert_eq!(found[0].header, ["a", "b"]);
    assert_eq!(found[0].rows[0].cells, ["`x`", "y z"]);
    assert_eq!(found[0].rows[0].line, 5);
    assert_eq!(code("`x`"), Some("x"));
    assert_eq!(code("`x`, `y`"), None);
}

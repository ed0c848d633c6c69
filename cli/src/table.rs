//! Plain-text tables for the CLI: each column as wide as its widest cell (capped, with an
//! ellipsis), the last column free, so long issuer or asset names never break alignment.

/// Widest a column (other than the last) may grow; longer cells end with `…`.
const MAX_WIDTH: usize = 48;

/// Renders `header` and `rows` as aligned lines (two spaces between columns).
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count().min(MAX_WIDTH));
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                let cell = fit(cell, widths[i]);
                let pad = widths[i] - cell.chars().count();
                line.push_str(&cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `cell`, cut to `width` characters with a trailing `…` when longer.
fn fit(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        cell.to_owned()
    } else {
        let mut cut: String = cell.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_and_stay_aligned() {
        let rows = vec![
            vec!["web-01".to_owned(), "letsencrypt-production".to_owned(), "ok".to_owned()],
            vec!["a".to_owned(), "internal".to_owned(), "reload command \"false\" exited".to_owned()],
        ];
        let text = render(&["SYSTEM_NAME", "ISSUER", "LAST ERROR"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        let col = |l: &str, needle: &str| l.find(needle).unwrap();
        assert_eq!(col(lines[0], "ISSUER"), col(lines[1], "letsencrypt-production"));
        assert_eq!(col(lines[0], "LAST ERROR"), col(lines[1], "ok"));
        assert_eq!(col(lines[0], "LAST ERROR"), col(lines[2], "reload"));
        assert_eq!(lines[0], "SYSTEM_NAME  ISSUER                  LAST ERROR");
    }

    #[test]
    fn very_long_cells_are_cut_with_an_ellipsis() {
        let long = "x".repeat(60);
        let text = render(&["A", "B"], &[vec![long, "b".to_owned()]]);
        let line = text.lines().nth(1).unwrap();
        assert_eq!(line, format!("{}…  b", "x".repeat(MAX_WIDTH - 1)));
    }
}

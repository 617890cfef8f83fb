/**
 * Plain-text tables: one section per scenario, a label column and value columns.
 * Ratios are printed as "0.42x"; a missing value is "-".
 */

export type Cell = number | string | null;
export type Row = { label: string; cells: Cell[]; ratio?: boolean } | { heading: string };
export type Section = { title: string; columns: string[]; rows: Row[]; notes: string[] };

export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString("en-US");
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 0.01 || value === 0) return value.toFixed(2);
  return value.toPrecision(2);
}

function cellText(cell: Cell, isRatio: boolean): string {
  if (cell === null) return "-";
  if (typeof cell === "string") return cell;
  return isRatio ? `${cell.toFixed(2)}x` : formatNumber(cell);
}

export function renderSection(section: Section): string {
  const body: string[][] = [];
  for (const row of section.rows) {
    if ("heading" in row) {
      body.push([row.heading]);
      continue;
    }
    // The last column of a table whose header ends in "/…" (a ratio) is shown as a ratio.
    const lastIsRatio = /\//.test(section.columns[section.columns.length - 1] ?? "");
    body.push([
      `  ${row.label}`,
      ...row.cells.map((c, i) => cellText(c, row.ratio ?? (lastIsRatio && i === row.cells.length - 1))),
    ]);
  }
  const header = ["", ...section.columns];
  const widths = header.map((h, i) => Math.max(h.length, ...body.filter((r) => r.length > 1).map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.length === 1 ? cells[0]! : cells.map((c, i) => (i === 0 ? c.padEnd(widths[0]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  const out = [`== ${section.title} ==`, line(header), ...body.map(line)];
  for (const note of section.notes) out.push(`  * ${note}`);
  return out.join("\n");
}

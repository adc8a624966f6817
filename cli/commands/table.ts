// Plain-text tables and human units, kubectl style (columns padded by three
// spaces, last column ragged). Pure.

/** Columns aligned to their widest cell; cells are single-line (newlines folded). */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const clean = (s: string) => s.replace(/\s*\n\s*/g, " ");
  const all = [headers.map(clean), ...rows.map((r) => headers.map((_, i) => clean(r[i] ?? "")))];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return (
    all
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
          .join("   ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

/** Ages as kubectl prints them (45s, 5m12s, 2d4h): the dispatcher's own Table code, so both agree. */
export { humanDuration as humanAge } from "../../controllers/dispatcher/api/table.js";

/** CPU in millicores as Kubernetes writes it: 250m, 2, 1500m. */
export function formatCpu(millis: number): string {
  return millis % 1000 === 0 ? String(millis / 1000) : `${millis}m`;
}

const BINARY_UNITS = ["Ki", "Mi", "Gi", "Ti", "Pi"] as const;

/** Bytes with a binary suffix, one decimal at most: 512Mi, 1.5Gi, 900. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return String(bytes);
  let value = bytes;
  let unit = "";
  for (const u of BINARY_UNITS) {
    if (value < 1024) break;
    value /= 1024;
    unit = u;
  }
  const text =
    value >= 100 || Number.isInteger(value)
      ? String(Math.round(value))
      : value.toFixed(1).replace(/\.0$/, "");
  return `${text}${unit}`;
}

/** Shortens a cell to `max` characters with an ellipsis. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 3))}...`;
}

/** RFC 3339 UTC time to the second, as the events table shows it. */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

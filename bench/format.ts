/**
 * How the benchmark's numbers are written in its tables: fixed decimals, thousands, met or
 * missed, a median with its interquartile range, and the Markdown table itself.
 */
import type { Spread } from './stats';

export const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
export const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
export const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MB`;
export const int = (x: number) => Math.round(x).toLocaleString('en-US');
export const pass = (ok: boolean) => (ok ? 'met' : '**MISSED**');
export const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
export const withSpread = (s: Spread) => `${f3(s.median)} (${f3(s.p25)}–${f3(s.p75)})`;
/** In the targets table: one more decimal, so that a near miss does not read as the target itself. */
export const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');
export const withSpread4 = (s: Spread) => `${f4(s.median)} (${f3(s.p25)}–${f3(s.p75)})`;

export function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

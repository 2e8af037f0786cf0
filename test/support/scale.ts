// How much work the long property and fuzz runs of `npm test` do. Tests size their work, not their
// wall time: HV_TEST_SCALE multiplies every such case count (default 1; 0.1 for a quick look on a
// busy machine, 10 or 100 for a long hunt), and a test never fails for taking long.

const raw = process.env.HV_TEST_SCALE;
const factor = raw === undefined ? 1 : Number(raw);
if (!(factor > 0 && factor <= 10_000)) throw new RangeError(`HV_TEST_SCALE='${raw}': a number above 0, at most 10000`);

/** `n` cases at the chosen scale, at least one. */
export function scaled(n: number): number {
  return Math.max(1, Math.round(n * factor));
}

/**
 * The few statistics the benchmark reports: medians, quartiles, and the pairwise ratio.
 */

export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  const high = Math.ceil(at);
  return sorted[low] + (sorted[high] - sorted[low]) * (at - low);
}

export function median(values: number[]): number {
  return quantile(values, 0.5);
}

/** The median with its interquartile range, the spread the tables show next to it. */
export interface Spread {
  median: number;
  p25: number;
  p75: number;
  n: number;
}

export function spread(values: number[]): Spread {
  return {
    median: median(values),
    p25: quantile(values, 0.25),
    p75: quantile(values, 0.75),
    n: values.length,
  };
}

/**
 * Pairwise ratios: element i compares the candidate's i-th measurement with the reference's i-th,
 * both taken back to back, so that slow drifts of a shared machine cancel out.
 */
export function pairwise<T>(
  reference: T[],
  candidate: T[],
  compare: (ref: T, cand: T) => number,
): number[] {
  return reference.map((ref, i) => compare(ref, candidate[i]));
}

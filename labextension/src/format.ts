/** How figures read in the panel: short, with units, the way Lambda's console writes them. */

/**
 * The part of a request id that tells rows apart: its last characters. Request ids are
 * UUIDv7, time-ordered, so their first characters are the same for every invocation of the
 * same minute; the tail is random.
 */
export function shortId(requestId: string): string {
  return requestId.slice(-SHORT_ID_CHARS);
}

export const SHORT_ID_CHARS = 6;

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) {
    return '–';
  }
  if (ms < 1000) {
    return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(0)} ms`;
  }
  if (ms < 60000) {
    return `${(ms / 1000).toFixed(2)} s`;
  }
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function megabytes(mb: number | null | undefined): string {
  return mb === null || mb === undefined ? '–' : `${mb} MB`;
}

/** Dollars with enough digits to show a fraction of a cent (local runs cost micro-dollars). */
export function cost(usd: number): string {
  if (usd === 0) {
    return '$0';
  }
  if (usd >= 0.01) {
    return `$${usd.toFixed(2)}`;
  }
  return `$${usd.toPrecision(2)}`;
}

export function gbSeconds(value: number): string {
  return value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(2) : value.toPrecision(2);
}

/** A wall-clock time (Unix seconds) as HH:MM:SS in the browser's time zone. */
export function clock(ts: number | null | undefined): string {
  if (ts === null || ts === undefined) {
    return '–';
  }
  const d = new Date(ts * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** Lambda's REPORT line for a finished invocation, from its stored figures. */
export function reportLine(inv: {
  request_id: string;
  duration_ms?: number | null;
  billed_duration_ms?: number | null;
  memory_size_mb?: number | null;
  max_memory_used_mb?: number | null;
  init_duration_ms?: number | null;
}): string | null {
  if (inv.duration_ms === null || inv.duration_ms === undefined || !inv.billed_duration_ms) {
    return null;
  }
  const parts = [
    `REPORT RequestId: ${inv.request_id}`,
    `Duration: ${inv.duration_ms.toFixed(2)} ms`,
    `Billed Duration: ${inv.billed_duration_ms} ms`,
    `Memory Size: ${inv.memory_size_mb} MB`,
    `Max Memory Used: ${inv.max_memory_used_mb} MB`
  ];
  if (inv.init_duration_ms !== null && inv.init_duration_ms !== undefined) {
    parts.push(`Init Duration: ${inv.init_duration_ms.toFixed(2)} ms`);
  }
  return parts.join('  ·  ');
}

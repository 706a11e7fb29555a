/**
 * UTC hour arithmetic. An hour is identified by its start, written "YYYY-MM-DDTHH:00:00Z" (the seed's
 * `last_hour_utc` format), so hours compare correctly as strings and as epoch milliseconds.
 */
export const HOUR_MS = 3_600_000;

const HOUR_PATTERN = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):00:00(?:\.000)?Z$/;

export function floorHour(ms: number): number {
  return Math.floor(ms / HOUR_MS) * HOUR_MS;
}

export function formatHour(ms: number): string {
  return `${new Date(floorHour(ms)).toISOString().slice(0, 13)}:00:00Z`;
}

/** Parses an hour string strictly; returns undefined for anything that is not a whole UTC hour. */
export function parseHour(text: string): number | undefined {
  const match = HOUR_PATTERN.exec(text);
  if (!match) return undefined;
  const ms = Date.parse(`${match[1]}-${match[2]}-${match[3]}T${match[4]}:00:00Z`);
  if (Number.isNaN(ms) || formatHour(ms).slice(0, 13) !== text.slice(0, 13)) return undefined;
  return ms;
}

/**
 * Accepts the hour formats found in existing state files: ours, the seed's Python isoformat()+"Z"
 * ("2026-11-24T08:00:00Z"), with fractional seconds, or with "+00:00". Returns undefined when the
 * timestamp is not exactly on an hour, because a watermark between hours would be ambiguous.
 */
export function parseWatermarkHour(text: string): number | undefined {
  const normalised = text.trim().replace(/\+00:00$/, "Z");
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(normalised)) return undefined;
  const ms = Date.parse(normalised);
  // Date.parse rolls impossible dates over (Feb 30 → Mar 2): only a round trip proves the date exists.
  if (Number.isNaN(ms) || ms % HOUR_MS !== 0 || formatHour(ms).slice(0, 13) !== normalised.slice(0, 13))
    return undefined;
  return ms;
}

export interface HourParts {
  year: string;
  month: string;
  day: string;
  hour: string;
}

export function hourParts(hourUtc: string): HourParts {
  const ms = parseHour(hourUtc);
  if (ms === undefined) throw new RangeError(`not a UTC hour: ${hourUtc}`);
  const iso = new Date(ms).toISOString();
  return { year: iso.slice(0, 4), month: iso.slice(5, 7), day: iso.slice(8, 10), hour: iso.slice(11, 13) };
}

/** Hours from `fromMs` to `toMs` inclusive, in order. */
export function hourRange(fromMs: number, toMs: number): string[] {
  const hours: string[] = [];
  for (let ms = floorHour(fromMs); ms <= toMs; ms += HOUR_MS) hours.push(formatHour(ms));
  return hours;
}

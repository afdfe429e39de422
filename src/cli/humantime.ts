/**
 * Human durations as the reference reads `FIREZONE_MAX_PARTITION_TIME` (the `humantime` 2.x
 * grammar): numbers each followed by a unit, optionally separated by spaces (`1h 30m`, `1h30m`,
 * `2.5d`), or a bare `0`. Units: ns/nsec/nanos, us/usec/µs, ms/msec/millis,
 * s/sec/secs/second/seconds, m/min/mins/minute/minutes, h/hr/hrs/hour/hours, d/day/days,
 * w/wk/wks/week/weeks, M/month/months (30.44 days), y/yr/yrs/year/years (365.25 days).
 * Errors carry the reference's wording, with byte offsets into the text.
 */

export type DurationResult = { readonly ok: true; readonly nanos: bigint } | { readonly ok: false; readonly error: string };

const U64_MAX = (1n << 64n) - 1n;
const NANOS_PER_SECOND = 1_000_000_000n;

/** Seconds per unit, or nanoseconds for the sub-second units. */
const UNITS: Record<string, { readonly seconds?: bigint; readonly nanos?: bigint }> = {};
for (const [names, unit] of [
  [['nanos', 'nsec', 'ns'], { nanos: 1n }],
  [['usec', 'us', 'µs'], { nanos: 1_000n }],
  [['millis', 'msec', 'ms'], { nanos: 1_000_000n }],
  [['seconds', 'second', 'secs', 'sec', 's'], { seconds: 1n }],
  [['minutes', 'minute', 'min', 'mins', 'm'], { seconds: 60n }],
  [['hours', 'hour', 'hr', 'hrs', 'h'], { seconds: 3_600n }],
  [['days', 'day', 'd'], { seconds: 86_400n }],
  [['weeks', 'week', 'wk', 'wks', 'w'], { seconds: 604_800n }],
  [['months', 'month', 'M'], { seconds: 2_630_016n }],
  [['years', 'year', 'yr', 'yrs', 'y'], { seconds: 31_557_600n }],
] as const) {
  for (const name of names) UNITS[name] = unit;
}

const OVERFLOW = 'number is too large or cannot be represented without a lack of precision (values below 1ns are not supported)';

class DurationError extends Error {}

/** Parses a human duration; the result is in nanoseconds. */
export function parseHumanDuration(text: string): DurationResult {
  if (text === '0') return { ok: true, nanos: 0n };
  try {
    return { ok: true, nanos: new Parser(text).parse() };
  } catch (error) {
    if (error instanceof DurationError) return { ok: false, error: error.message };
    throw error;
  }
}

interface Fraction {
  readonly numerator: bigint;
  readonly denominator: bigint;
}

class Parser {
  private readonly chars: string[];
  private readonly offsets: number[];
  private index = 0;
  private seconds = 0n;
  private subsecNanos = 0n;

  constructor(text: string) {
    this.chars = [...text];
    this.offsets = [];
    let offset = 0;
    for (const char of this.chars) {
      this.offsets.push(offset);
      offset += Buffer.byteLength(char);
    }
    this.offsets.push(offset);
  }

  parse(): bigint {
    let n = this.firstDigit();
    if (n === undefined) throw new DurationError('value was empty');
    for (;;) {
      let fraction: Fraction | undefined;
      let off = this.off();
      let char: string | undefined;
      while ((char = this.next()) !== undefined) {
        if (isDigit(char)) {
          n = checkedU64(n * 10n + BigInt(char));
        } else if (isWhitespace(char)) {
          // Spaces inside a number are skipped.
        } else if (isUnitChar(char)) {
          break;
        } else if (char === '.') {
          const parsed = this.fraction(off);
          fraction = parsed.fraction;
          off = parsed.off;
          break;
        } else {
          throw new DurationError(`invalid character at ${off}`);
        }
        off = this.off();
      }
      const start = off;
      off = this.off();
      let continued = false;
      while ((char = this.next()) !== undefined) {
        if (isDigit(char)) {
          this.addUnit(n, fraction, start, off);
          n = BigInt(char);
          continued = true;
          break;
        }
        if (isWhitespace(char)) break;
        if (!isUnitChar(char)) throw new DurationError(`invalid character at ${off}`);
        off = this.off();
      }
      if (continued) continue;
      this.addUnit(n, fraction, start, off);
      const following = this.firstDigit();
      if (following === undefined) return this.seconds * NANOS_PER_SECOND + this.subsecNanos;
      n = following;
    }
  }

  private firstDigit(): bigint | undefined {
    const off = this.off();
    let char: string | undefined;
    while ((char = this.next()) !== undefined) {
      if (isDigit(char)) return BigInt(char);
      if (isWhitespace(char)) continue;
      throw new DurationError(`expected number at ${off}`);
    }
    return undefined;
  }

  private fraction(startOff: number): { fraction: Fraction; off: number } {
    let off = startOff;
    let numerator = 0n;
    let denominator = 1n;
    let char: string | undefined;
    while ((char = this.next()) !== undefined) {
      if (isDigit(char)) {
        denominator = checkedU64(denominator * 10n);
        numerator = checkedU64(numerator * 10n + BigInt(char));
      } else if (isWhitespace(char)) {
        // skipped
      } else if (isUnitChar(char)) {
        break;
      } else {
        throw new DurationError(`invalid character at ${off}`);
      }
      off = this.off();
    }
    if (denominator === 1n) throw new DurationError(`invalid character at ${off}`);
    return { fraction: { numerator, denominator }, off };
  }

  private addUnit(n: bigint, fraction: Fraction | undefined, start: number, end: number): void {
    const unitText = this.chars.slice(this.charIndexAt(start), this.charIndexAt(end)).join('');
    const unit = UNITS[unitText];
    if (unit === undefined) {
      if (unitText === '') throw new DurationError(`time unit needed, for example ${n}sec or ${n}ms`);
      throw new DurationError(
        `unknown time unit ${JSON.stringify(unitText)}, supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)`,
      );
    }
    if (unit.nanos !== undefined) this.add(0n, checkedU64(n * unit.nanos));
    else this.add(checkedU64(n * unit.seconds!), 0n);
    if (fraction === undefined) return;
    const { numerator, denominator } = fraction;
    if (unit.nanos === 1n) throw new DurationError(OVERFLOW);
    if (unit.nanos !== undefined) {
      this.add(0n, exactDiv(checkedU64(numerator * unit.nanos), denominator));
    } else if (unit.seconds! <= 60n) {
      this.add(0n, exactDiv(checkedU64(numerator * unit.seconds! * NANOS_PER_SECOND), denominator));
    } else {
      this.add(exactDiv(checkedU64(numerator * unit.seconds!), denominator), 0n);
    }
  }

  private add(seconds: bigint, nanos: bigint): void {
    let subsec = checkedU64(this.subsecNanos + nanos);
    let carry = 0n;
    if (subsec >= NANOS_PER_SECOND) {
      carry = subsec / NANOS_PER_SECOND;
      subsec %= NANOS_PER_SECOND;
    }
    this.seconds = checkedU64(this.seconds + checkedU64(seconds + carry));
    this.subsecNanos = subsec;
  }

  private next(): string | undefined {
    return this.index < this.chars.length ? this.chars[this.index++] : undefined;
  }

  /** Byte offset of the next character. */
  private off(): number {
    return this.offsets[this.index]!;
  }

  private charIndexAt(byteOffset: number): number {
    return this.offsets.indexOf(byteOffset);
  }
}

function isDigit(char: string): boolean {
  return char >= '0' && char <= '9';
}

function isUnitChar(char: string): boolean {
  return (char >= 'a' && char <= 'z') || (char >= 'A' && char <= 'Z') || char === 'µ';
}

/** Rust's `char::is_whitespace` (Unicode White_Space). */
function isWhitespace(char: string): boolean {
  return /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u.test(char);
}

function checkedU64(value: bigint): bigint {
  if (value > U64_MAX) throw new DurationError(OVERFLOW);
  return value;
}

function exactDiv(value: bigint, divisor: bigint): bigint {
  if (value % divisor !== 0n) throw new DurationError(OVERFLOW);
  return value / divisor;
}

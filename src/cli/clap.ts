/**
 * Usage errors worded as the reference's argument parser (clap 4.6, default features, no colour)
 * words them, so scripts and operators see the same text from this gateway as from the official
 * one. Every error ends with the same hint and exits 2.
 */

export const USAGE_EXIT_CODE = 2;

const TRY_HELP = "\n\nFor more information, try '--help'.\n";
const TAB = '  ';

/** `error: invalid value 'x' for '--log-format <LOG_FORMAT>'` with the possible values and a tip. */
export function invalidValue(value: string, arg: string, possible: readonly string[]): string {
  let text = value === '' ? `error: a value is required for '${arg}' but none was supplied` : `error: invalid value '${value}' for '${arg}'`;
  if (possible.length > 0) text += `\n${TAB}[possible values: ${possible.join(', ')}]`;
  const suggestion = didYouMean(value, possible).pop();
  if (suggestion !== undefined) text += `\n\n${TAB}tip: a similar value exists: '${suggestion}'`;
  return text + TRY_HELP;
}

/** A value the option's parser rejected: `error: invalid value 'x' for '<arg>': <reason>`. */
export function valueValidation(value: string, arg: string, reason: string): string {
  return `error: invalid value '${value}' for '${arg}': ${reason}${TRY_HELP}`;
}

/** An option at the end of the command line, or followed by another flag. */
export function missingValue(arg: string, possible: readonly string[] = []): string {
  return invalidValue('', arg, possible);
}

export function unknownArgument(arg: string, longs: readonly string[], usage: string): string {
  let text = `error: unexpected argument '${arg}' found`;
  const suggestion = arg.startsWith('--') ? didYouMean(arg.slice(2).split('=')[0]!, longs).pop() : undefined;
  if (suggestion !== undefined) {
    text += `\n\n${TAB}tip: a similar argument exists: '--${suggestion}'`;
  } else if (arg.startsWith('-')) {
    text += `\n\n${TAB}tip: to pass '${arg}' as a value, use '-- ${arg}'`;
  }
  return `${text}\n\n${usage}${TRY_HELP}`;
}

export function usedMultipleTimes(arg: string, usage: string): string {
  return `error: the argument '${arg}' cannot be used multiple times\n\n${usage}${TRY_HELP}`;
}

export function unexpectedValue(value: string, arg: string, usage: string): string {
  return `error: unexpected value '${value}' for '${arg}' found; no more were expected\n\n${usage}${TRY_HELP}`;
}

/**
 * The candidates similar to `value` (Jaro similarity above 0.7), least similar first, as clap's
 * suggestions: the last one is what the tip names.
 */
export function didYouMean(value: string, candidates: readonly string[]): string[] {
  const scored: Array<{ confidence: number; candidate: string }> = [];
  for (const candidate of candidates) {
    const confidence = jaro(value, candidate);
    if (confidence <= 0.7) continue;
    // Sorted by similarity; among equals the later candidate goes last and is the one suggested.
    let position = scored.findIndex((entry) => entry.confidence > confidence);
    if (position === -1) position = scored.length;
    scored.splice(position, 0, { confidence, candidate });
  }
  return scored.map((entry) => entry.candidate);
}

/** Jaro similarity of two strings, by Unicode scalar values, as strsim computes it. */
export function jaro(a: string, b: string): number {
  const left = [...a];
  const right = [...b];
  if (left.length === 0 && right.length === 0) return 1;
  if (left.length === 0 || right.length === 0) return 0;
  const window = Math.max(0, Math.floor(Math.max(left.length, right.length) / 2) - 1);
  const rightMatched = new Array<boolean>(right.length).fill(false);
  const leftMatches: string[] = [];
  for (let i = 0; i < left.length; i++) {
    const start = Math.max(0, i - window);
    const end = Math.min(right.length - 1, i + window);
    for (let j = start; j <= end; j++) {
      if (!rightMatched[j] && left[i] === right[j]) {
        rightMatched[j] = true;
        leftMatches.push(left[i]!);
        break;
      }
    }
  }
  const matches = leftMatches.length;
  if (matches === 0) return 0;
  const rightMatches = right.filter((_, j) => rightMatched[j]);
  let transpositions = 0;
  for (let k = 0; k < matches; k++) if (leftMatches[k] !== rightMatches[k]) transpositions++;
  const m = matches;
  return (m / left.length + m / right.length + (m - Math.floor(transpositions / 2)) / m) / 3;
}

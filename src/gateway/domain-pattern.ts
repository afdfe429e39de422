/**
 * DNS resource address patterns (`*.example.com`, `**.corp`, `app.f??.example.com`): glob matching per label,
 * case-insensitive for ASCII. `*`, `?` and `[...]` stay within one label; `**` must be a whole label and matches
 * zero or more labels. A pattern starting with `*.` also matches its bare parent. Invalid patterns never match.
 */
export function matchesDomainPattern(pattern: string, domain: string): boolean {
  const name = stripTrailingDot(domain).toLowerCase();
  const lowered = pattern.toLowerCase();
  const labels = parsePattern(lowered);
  if (labels === undefined) return false;
  if (lowered.startsWith('*.') && lowered.slice(2) === name) return true;
  return matchLabels(labels, 0, name.split('.'), 0);
}

type PatternLabel = { readonly kind: 'any-labels' } | { readonly kind: 'glob'; readonly tokens: readonly Token[] };

type Token =
  | { readonly kind: 'literal'; readonly char: string }
  | { readonly kind: 'one' }
  | { readonly kind: 'run' }
  | { readonly kind: 'class'; readonly negated: boolean; readonly ranges: readonly (readonly [string, string])[] };

function stripTrailingDot(domain: string): string {
  return domain.length > 1 && domain.endsWith('.') ? domain.slice(0, -1) : domain;
}

function parsePattern(pattern: string): PatternLabel[] | undefined {
  const labels: PatternLabel[] = [];
  for (const label of pattern.split('.')) {
    if (label === '**') {
      labels.push({ kind: 'any-labels' });
      continue;
    }
    const tokens = parseLabel(label);
    if (tokens === undefined) return undefined;
    labels.push({ kind: 'glob', tokens });
  }
  return labels;
}

function parseLabel(label: string): Token[] | undefined {
  const tokens: Token[] = [];
  for (let i = 0; i < label.length; i++) {
    const c = label[i]!;
    if (c === '*') {
      if (label[i + 1] === '*') return undefined;
      tokens.push({ kind: 'run' });
    } else if (c === '?') {
      tokens.push({ kind: 'one' });
    } else if (c === '[') {
      const parsed = parseClass(label, i + 1);
      if (parsed === undefined) return undefined;
      tokens.push(parsed.token);
      i = parsed.end;
    } else {
      tokens.push({ kind: 'literal', char: c });
    }
  }
  return tokens;
}

/** Parses a class body starting after `[`; `end` is the index of the closing `]`. */
function parseClass(label: string, start: number): { token: Token; end: number } | undefined {
  let i = start;
  let negated = false;
  if (label[i] === '!') {
    negated = true;
    i++;
  }
  const ranges: [string, string][] = [];
  let first = true;
  while (i < label.length) {
    const c = label[i]!;
    if (c === ']' && !first) return { token: { kind: 'class', negated, ranges }, end: i };
    first = false;
    if (label[i + 1] === '-' && i + 2 < label.length && label[i + 2] !== ']') {
      ranges.push([c, label[i + 2]!]);
      i += 3;
    } else {
      ranges.push([c, c]);
      i++;
    }
  }
  return undefined;
}

function matchLabels(pattern: readonly PatternLabel[], p: number, labels: readonly string[], l: number): boolean {
  if (p === pattern.length) return l === labels.length;
  const current = pattern[p]!;
  if (current.kind === 'any-labels') {
    for (let skip = l; skip <= labels.length; skip++) {
      if (matchLabels(pattern, p + 1, labels, skip)) return true;
    }
    return false;
  }
  if (l === labels.length) return false;
  return matchTokens(current.tokens, 0, labels[l]!, 0) && matchLabels(pattern, p + 1, labels, l + 1);
}

function matchTokens(tokens: readonly Token[], t: number, text: string, i: number): boolean {
  if (t === tokens.length) return i === text.length;
  const token = tokens[t]!;
  switch (token.kind) {
    case 'run':
      for (let j = i; j <= text.length; j++) if (matchTokens(tokens, t + 1, text, j)) return true;
      return false;
    case 'one':
      return i < text.length && matchTokens(tokens, t + 1, text, i + 1);
    case 'literal':
      return text[i] === token.char && matchTokens(tokens, t + 1, text, i + 1);
    case 'class': {
      if (i >= text.length) return false;
      const c = text[i]!;
      const inClass = token.ranges.some(([from, to]) => c >= from && c <= to);
      return inClass !== token.negated && matchTokens(tokens, t + 1, text, i + 1);
    }
  }
}

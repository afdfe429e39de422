/**
 * RUST_LOG-style log filters: `info`, `firezone_gateway=debug,warn`, `snownet=trace`.
 * A directive is `[target][=level]`; the most specific matching target wins, a bare level
 * sets the default. Span filters (`target[span{field}]=level`) are accepted and their span
 * part ignored, so existing RUST_LOG values keep working.
 */

export const LEVELS = ['off', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LevelName = (typeof LEVELS)[number];

export const enum Level {
  Off = 0,
  Error = 1,
  Warn = 2,
  Info = 3,
  Debug = 4,
  Trace = 5,
}

interface Directive {
  readonly target: string;
  readonly level: Level;
}

export class LogFilter {
  private readonly directives: readonly Directive[];
  private readonly defaultLevel: Level;

  private constructor(directives: Directive[], defaultLevel: Level) {
    this.directives = directives.sort((a, b) => b.target.length - a.target.length);
    this.defaultLevel = defaultLevel;
  }

  /** Parses a filter; throws a descriptive Error on an invalid directive. */
  static parse(spec: string): LogFilter {
    const directives: Directive[] = [];
    let defaultLevel = Level.Off;
    let sawDefault = false;
    for (const raw of spec.split(',')) {
      const text = raw.trim();
      if (text === '') continue;
      const eq = text.lastIndexOf('=');
      const targetPart = (eq === -1 ? text : text.slice(0, eq)).replace(/\[.*\]$/s, '');
      const levelPart = eq === -1 ? undefined : text.slice(eq + 1);
      if (levelPart === undefined) {
        const level = parseLevel(targetPart);
        if (level !== undefined) {
          defaultLevel = level;
          sawDefault = true;
          continue;
        }
        checkTarget(targetPart, text);
        directives.push({ target: targetPart, level: Level.Trace });
        continue;
      }
      const level = parseLevel(levelPart);
      if (level === undefined) throw new Error(`invalid log level \`${levelPart}\` in directive \`${text}\``);
      if (targetPart === '') {
        defaultLevel = level;
        sawDefault = true;
        continue;
      }
      checkTarget(targetPart, text);
      directives.push({ target: targetPart, level });
    }
    return new LogFilter(directives, sawDefault ? defaultLevel : Level.Off);
  }

  /** The most verbose level enabled for `target`. */
  levelFor(target: string): Level {
    for (const directive of this.directives) {
      if (target === directive.target || target.startsWith(directive.target + '::')) return directive.level;
    }
    return this.defaultLevel;
  }
}

function parseLevel(text: string): Level | undefined {
  const index = LEVELS.indexOf(text.toLowerCase() as LevelName);
  if (index !== -1) return index as Level;
  if (/^[0-5]$/.test(text)) return Number(text) as Level;
  return undefined;
}

function checkTarget(target: string, directive: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_:-]*$/.test(target)) {
    throw new Error(`invalid log target \`${target}\` in directive \`${directive}\``);
  }
}

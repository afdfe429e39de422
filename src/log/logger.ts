import { Level, LogFilter, LEVELS } from './filter.ts';

export type LogFields = Readonly<Record<string, unknown>>;
/** `human` lines (the default) or one JSON object per line, as 1.6.0's `--log-format`. */
export type LogFormat = 'human' | 'json' | /** the earlier name of `human` */ 'text';

export interface LogSink {
  write(line: string): void;
}

export interface Logger {
  readonly target: string;
  enabled(level: Level): boolean;
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  trace(message: string, fields?: LogFields): void;
}

interface LoggingConfig {
  filter: LogFilter;
  format: LogFormat;
  sink: LogSink;
  clock: () => Date;
}

/**
 * When the reader of stdout goes away (EPIPE), logging stops quietly instead of the stream's
 * unhandled 'error' event ending the gateway.
 */
let stdoutOpen = true;
let stdoutGuarded = false;
const stdoutSink: LogSink = {
  write: (line) => {
    if (!stdoutGuarded) {
      stdoutGuarded = true;
      process.stdout.on('error', () => {
        stdoutOpen = false;
      });
    }
    if (stdoutOpen) process.stdout.write(line);
  },
};

let config: LoggingConfig = {
  filter: LogFilter.parse('info'),
  format: 'human',
  sink: stdoutSink,
  clock: () => new Date(),
};
let generation = 0;
const secrets = new Set<string>();

/** Replaces the global logging configuration; loggers created earlier follow it. */
export function configureLogging(options: Partial<LoggingConfig>): void {
  config = { ...config, ...options };
  generation++;
}

/**
 * Registers a value that must never appear in a log line (the portal token). Every
 * message and string field is scrubbed of it.
 */
export function registerSecret(secret: string): void {
  if (secret.length > 0) secrets.add(secret);
}

export function createLogger(target: string): Logger {
  let cachedGeneration = -1;
  let maxLevel = Level.Off;
  const enabled = (level: Level): boolean => {
    if (cachedGeneration !== generation) {
      maxLevel = config.filter.levelFor(target);
      cachedGeneration = generation;
    }
    return level <= maxLevel;
  };
  const log = (level: Level, message: string, fields?: LogFields): void => {
    if (!enabled(level)) return;
    config.sink.write(formatLine(level, target, message, fields));
  };
  return {
    target,
    enabled,
    error: (m, f) => log(Level.Error, m, f),
    warn: (m, f) => log(Level.Warn, m, f),
    info: (m, f) => log(Level.Info, m, f),
    debug: (m, f) => log(Level.Debug, m, f),
    trace: (m, f) => log(Level.Trace, m, f),
  };
}

function formatLine(level: Level, target: string, message: string, fields: LogFields | undefined): string {
  const time = config.clock().toISOString();
  const levelName = LEVELS[level]!.toUpperCase();
  if (config.format === 'json') {
    // The reference's order: time and level, the event's message and fields, then the target.
    const record: Record<string, unknown> = { timestamp: time, level: levelName, message: redact(message) };
    if (fields) for (const [key, value] of Object.entries(fields)) if (key !== 'target') record[key] = redactValue(value);
    record['target'] = target;
    return JSON.stringify(record, jsonReplacer) + '\n';
  }
  let line = `${time} ${levelName.padStart(5)} ${target}: ${redact(message)}`;
  if (fields) {
    for (const [key, value] of Object.entries(fields)) line += ` ${key}=${formatValue(redactValue(value))}`;
  }
  return line + '\n';
}

function redact(text: string): string {
  for (const secret of secrets) {
    if (text.includes(secret)) text = text.split(secret).join('<redacted>');
  }
  return text;
}

function redactValue(value: unknown): unknown {
  if (typeof value === 'string') return redact(value);
  if (value instanceof Error) return redact(errorChain(value));
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return JSON.parse(redact(JSON.stringify(value, jsonReplacer) ?? 'null'));
  }
  return value;
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'object' && value !== null) return JSON.stringify(value, jsonReplacer);
  return String(value);
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (value instanceof Error) return errorChain(value);
  return value;
}

/** `outer: inner: innermost`, following `Error.cause`, as the reference prints error chains. */
export function errorChain(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 16; depth++) {
    if (current instanceof Error) {
      parts.push(current.message);
      current = current.cause;
    } else {
      parts.push(String(current));
      break;
    }
  }
  return parts.join(': ');
}

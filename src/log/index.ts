export { Level, LogFilter, LEVELS, type LevelName } from './filter.ts';
export {
  configureLogging,
  createLogger,
  errorChain,
  registerSecret,
  type LogFields,
  type LogFormat,
  type Logger,
  type LogSink,
} from './logger.ts';

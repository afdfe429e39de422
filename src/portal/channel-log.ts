/**
 * The log lines the reference prints for portal channel events, for the runtime shell to use.
 * Message payloads, tokens and URLs are never logged.
 */
import { createLogger, type Logger } from '../log/index.ts';
import { displayErrorReason } from './phoenix-frame.ts';
import type { ChannelEvent, PortalFatalError } from './phoenix-channel.ts';

const defaultLogger = createLogger('phoenix_channel');

export function logChannelEvent<M>(event: ChannelEvent<M>, host: string, logger: Logger = defaultLogger): void {
  switch (event.kind) {
    case 'stateChanged':
      switch (event.state) {
        case 'joining':
          logger.info('Connected to portal', { host });
          return;
        case 'joined':
          logger.info('Joined gateway room on portal');
          return;
        case 'connecting':
          logger.info('Connecting to portal', { host });
          return;
        case 'reconnecting':
          logger.info('Waiting to reconnect to portal', { host });
          return;
        case 'closing':
        case 'disconnected':
        case 'failed':
          logger.info(`Portal connection ${event.state}`, { host });
          return;
      }
      return;
    case 'hiccup':
      logger.info(`Hiccup in portal connection: Connection hiccup: ${event.error}`, {
        backoff: `${(event.delayMs / 1000).toFixed(3)}s`,
        max_elapsed_time: event.maxElapsedMs === undefined ? 'None' : `${event.maxElapsedMs / 1000}s`,
      });
      return;
    case 'dropped':
      logger.warn(`Failed to deserialize message: ${event.reason}`, { topic: event.topic, event: event.event });
      return;
    case 'requestFailed':
      logger.warn(`Request failed: ${displayErrorReason(event.reason)}`, { topic: event.topic, ref: event.ref });
      return;
    case 'connect':
    case 'closeSocket':
    case 'closeGracefully':
    case 'joined':
    case 'message':
    case 'fatal':
      return;
  }
}

/** The anyhow chain the reference prints before exiting with code 1. */
export function fatalExitMessage(error: PortalFatalError): string {
  return `Failed to start Gateway: Failed to login to portal: ${error.message}`;
}

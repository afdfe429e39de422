import { writeFileSync } from 'node:fs';
import { RECEIVE_BUFFER_SIZE, SEND_BUFFER_SIZE } from '../runtime/socket-buffers.ts';
import { ioErrorMessage } from './io-error.ts';

/**
 * What 1.6.0 writes to `net.core.rmem_max` / `wmem_max` at start unless `--no-inc-buf`: the
 * kernel caps a socket's SO_RCVBUF / SO_SNDBUF request at these, so the UDP sockets' large
 * buffers only take effect once they are raised (16 MiB receive, 2 MiB send on Linux).
 */

export type WriteSysctl = (path: string, value: string) => void;

export interface IncBufLog {
  info(message: string): void;
}

/** Raises both limits, logging each outcome at INFO as the reference does; never fails. */
export function raiseSocketBufferLimits(log: IncBufLog, write: WriteSysctl = (path, value) => writeFileSync(path, value)): void {
  for (const [name, size] of [
    ['rmem_max', RECEIVE_BUFFER_SIZE],
    ['wmem_max', SEND_BUFFER_SIZE],
  ] as const) {
    try {
      write(`/proc/sys/net/core/${name}`, String(size));
      log.info(`Set \`core.${name}\` to ${size}`);
    } catch (error) {
      log.info(`Failed to increase \`core.${name}\`: ${ioErrorMessage(error)}`);
    }
  }
}

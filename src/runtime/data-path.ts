/**
 * Which data path the process runs: `native` (the default: transport AEAD in the addon, UDP
 * GSO/GRO, TUN offloads where the kernel has them) or `fallback` (node:crypto, one datagram per
 * send and receive, plain TUN reads and writes), chosen with `FZ_DATA_PATH=fallback`. Both speak
 * the same protocol and are tested against the same suites; the fallback is the portable path
 * and the yardstick for the native one.
 */
import { createLogger } from '../log/index.ts';
import { NodeCryptoTransportCipher, type TransportCipher } from '../wireguard/index.ts';
import { NativeTransportCipher } from './native-cipher.ts';
import { isNativeAddonBuilt } from './native.ts';

export type DataPathMode = 'native' | 'fallback';

export const DATA_PATH_ENV = 'FZ_DATA_PATH';

const log = createLogger('data_path');

/** The mode `env` asks for; anything but `fallback` means native. */
export function dataPathMode(env: Readonly<Record<string, string | undefined>> = process.env): DataPathMode {
  return env[DATA_PATH_ENV] === 'fallback' ? 'fallback' : 'native';
}

/** The transport cipher of a mode: the addon's unless falling back (or the addon is missing). */
export function transportCipherFor(mode: DataPathMode): TransportCipher {
  if (mode === 'native' && isNativeAddonBuilt()) return new NativeTransportCipher();
  return new NodeCryptoTransportCipher();
}

/** Whether UDP and TUN offloads are to be tried (the kernel may still refuse them). */
export function offloadsFor(mode: DataPathMode): boolean {
  return mode === 'native';
}

export function logDataPath(mode: DataPathMode, cipher: TransportCipher): void {
  log.info('Data path', { mode, cipher: cipher.kind, offloads: offloadsFor(mode) });
}

/**
 * Entry point of the single executable: the addon comes out of the executable's assets before
 * any module that loads it is evaluated (hence the dynamic import), then the gateway runs.
 */
import { getRawAsset, isSea } from 'node:sea';
import { ADDON_ASSET, extractAndLoadAddon } from './addon.ts';

const globals = globalThis as { __FIREZONE_MODULE_URL__?: string };

function start(): Promise<void> {
  if (isSea()) {
    try {
      globals.__FIREZONE_MODULE_URL__ = extractAndLoadAddon(new Uint8Array(getRawAsset(ADDON_ASSET))).moduleUrl;
    } catch (error) {
      process.stderr.write(`Failed to start Gateway: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    }
  }
  return import('../../src/bin/gateway-main.ts').then((entry) => entry.run());
}

void start();

/**
 * The User-Agent of the WebSocket upgrade (spec gateway-1.6 §1.3):
 * `<os_type>/<os_version> gateway/<version>[ (<arch>; <kernel>)]`, non-ASCII removed (1.4.13 said
 * `connlib/`). The portal takes the first space-separated token starting with `gateway/` (or
 * `connlib/`, …) as the gateway version and routes clients by it, so `GATEWAY_VERSION` (the one
 * `--version` prints) must stay plain SemVer.
 */

import { GATEWAY_VERSION } from '../cli/version.ts';

export { GATEWAY_VERSION };

export interface OsFacts {
  /** os_info's display name, e.g. `Ubuntu`, `Alpine Linux`, `Linux`. */
  readonly osType: string;
  /** e.g. `22.04`; `Unknown` when the release file has none. */
  readonly osVersion: string;
  /** Rust's architecture name (`x86_64`, `aarch64`), or undefined when unknown. */
  readonly arch: string | undefined;
  /** `uname -r`, or undefined when unknown. */
  readonly kernel: string | undefined;
}

export function userAgent(os: OsFacts, version: string = GATEWAY_VERSION): string {
  const text = `${os.osType}/${os.osVersion} gateway/${version}${additionalInfo(os.arch, os.kernel)}`;
  return text.replace(/[^\x00-\x7f]/g, '');
}

function additionalInfo(arch: string | undefined, kernel: string | undefined): string {
  if (arch !== undefined && kernel !== undefined) return ` (${arch}; ${kernel})`;
  if (arch !== undefined) return ` (${arch})`;
  if (kernel !== undefined) return ` (${kernel})`;
  return '';
}

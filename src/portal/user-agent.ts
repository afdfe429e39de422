/**
 * The User-Agent of the WebSocket upgrade (spec portal-protocol §1.5):
 * `<os_type>/<os_version> connlib/<version>[ (<arch>; <kernel>)]`, non-ASCII removed.
 * The portal takes the first space-separated token starting with `connlib/` as the gateway
 * version and gates features on it, so `GATEWAY_VERSION` must stay plain SemVer >= 1.4.0.
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
  const text = `${os.osType}/${os.osVersion} connlib/${version}${additionalInfo(os.arch, os.kernel)}`;
  return text.replace(/[^\x00-\x7f]/g, '');
}

function additionalInfo(arch: string | undefined, kernel: string | undefined): string {
  if (arch !== undefined && kernel !== undefined) return ` (${arch}; ${kernel})`;
  if (arch !== undefined) return ` (${arch})`;
  if (kernel !== undefined) return ` (${kernel})`;
  return '';
}

/**
 * The upstream nameservers for the :53535 forwarder: the `nameserver` lines of /etc/resolv.conf,
 * read once at start-up (operations §2 step 10). Search domains, options and /etc/hosts play no
 * part. A nameserver line that is not an IP address makes the whole file invalid, as in the
 * reference ("Failed to parse /etc/resolv.conf").
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';

export const RESOLV_CONF_PATH = '/etc/resolv.conf';

export type ResolvConfResult =
  | { readonly ok: true; readonly nameservers: readonly string[] }
  | { readonly ok: false; readonly error: string };

export function parseResolvConf(text: string): ResolvConfResult {
  const nameservers: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.replace(/[#;].*$/, '').trim();
    if (line === '') continue;
    const [keyword, value, ...rest] = line.split(/\s+/);
    if (keyword !== 'nameserver') continue;
    if (value === undefined || rest.length > 0) {
      return { ok: false, error: `line ${index + 1}: expected one address after nameserver` };
    }
    const address = value.replace(/%.*$/, '');
    if (isIP(address) === 0) return { ok: false, error: `line ${index + 1}: invalid address ${value}` };
    if (!nameservers.includes(value)) nameservers.push(value);
  }
  return { ok: true, nameservers };
}

/** Reads and parses the file; the error strings are the reference's fatal start-up messages. */
export async function readResolvConf(path = RESOLV_CONF_PATH): Promise<ResolvConfResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    return { ok: false, error: `Failed to read ${path}: ${(error as Error).message}` };
  }
  const parsed = parseResolvConf(text);
  return parsed.ok ? parsed : { ok: false, error: `Failed to parse ${path}: ${parsed.error}` };
}

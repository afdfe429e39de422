/**
 * `--api-url` is parsed as a URL when the command line is read, as the reference's parser does
 * (a usage error, exit 2); the scheme is checked later, when the login URL is built (exit 1).
 * Node's WHATWG parser accepts and rejects what the reference's `url` crate does, but gives no
 * reason, so the reason is worked out here in the crate's words.
 */

/** Undefined when `value` parses as a URL, else the reason in the reference's words. */
export function apiUrlError(value: string): string | undefined {
  if (URL.canParse(value)) return undefined;
  // The WHATWG parser trims C0 controls and spaces and drops tabs and newlines first.
  const text = value.replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, '').replace(/[\t\n\r]/g, '');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text);
  if (scheme === null) return 'relative URL without a base';
  const rest = text.slice(scheme[0].length);
  const authority = /^[/\\]*([^/\\?#]*)/.exec(rest)![1]!;
  const hostAndPort = authority.slice(authority.lastIndexOf('@') + 1);
  const { host, port } = splitPort(hostAndPort);
  if (host === '') return 'empty host';
  if (host.startsWith('[')) return 'invalid IPv6 address';
  if (port !== undefined && (!/^\d*$/.test(port) || Number(port) > 65535)) return 'invalid port number';
  if (looksLikeIpv4(host)) return 'invalid IPv4 address';
  if (/[\x00-\x20#%/:<>?@[\\\]^|]/.test(decodeOrKeep(host))) return 'invalid domain character';
  return 'invalid international domain name';
}

function splitPort(hostAndPort: string): { host: string; port: string | undefined } {
  if (hostAndPort.startsWith('[')) {
    const close = hostAndPort.indexOf(']');
    if (close === -1) return { host: hostAndPort, port: undefined };
    const after = hostAndPort.slice(close + 1);
    return { host: hostAndPort.slice(0, close + 1), port: after.startsWith(':') ? after.slice(1) : undefined };
  }
  const colon = hostAndPort.indexOf(':');
  if (colon === -1) return { host: hostAndPort, port: undefined };
  return { host: hostAndPort.slice(0, colon), port: hostAndPort.slice(colon + 1) };
}

/** The WHATWG "ends in a number" check: the last label (ignoring one trailing dot) is numeric. */
function looksLikeIpv4(host: string): boolean {
  const labels = host.split('.');
  if (labels.length > 1 && labels[labels.length - 1] === '') labels.pop();
  const last = labels[labels.length - 1] ?? '';
  return /^\d+$/.test(last) || /^0[xX][0-9A-Fa-f]*$/.test(last);
}

function decodeOrKeep(host: string): string {
  try {
    return decodeURIComponent(host);
  } catch {
    return host;
  }
}

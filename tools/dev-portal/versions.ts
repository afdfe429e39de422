// The portal's version gates (spec gateway-1.6 §1.3, §1.4): the version a device advertises in its User-Agent,
// and which gateway versions may serve a client of a given version.

/** The component prefixes `Portal.Version.fetch_version` looks for, in the space-separated User-Agent. */
const VERSION_PREFIXES = ['relay/', 'connlib/', 'headless-client/', 'gui-client/', 'apple-client/', 'android-client/', 'gateway/'];

/** The text after the first matching `<component>/` token (unchecked, as the portal stores it), or undefined. */
export function userAgentVersion(userAgent: string): string | undefined {
  for (const token of userAgent.split(' ')) {
    const prefix = VERSION_PREFIXES.find((p) => token.startsWith(p));
    if (prefix !== undefined) return token.slice(prefix.length);
  }
  return undefined;
}

export interface SemVer {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  readonly pre: boolean;
}

/** `X.Y.Z` with an optional `-pre` and `+build`, as Elixir's `Version.parse`. */
export function parseVersion(text: string | undefined): SemVer | undefined {
  if (text === undefined) return undefined;
  const match = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/.exec(text);
  if (match === null) return undefined;
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]), pre: match[4] !== undefined };
}

function compare(a: SemVer, b: { major: number; minor: number; patch: number }): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch || (a.pre ? -1 : 0);
}

/**
 * Whether a gateway may serve a client (`compatible_gateway?`): a client at X.Y is served by gateways from
 * X.(Y-1).0 up to but excluding X.(Y+2).0. A client without a version is served by every gateway; a client whose
 * version does not parse by none; a gateway whose version is missing or does not parse never serves a versioned
 * client. Internet resources are withheld from gateways before 1.3.0 (`adapt_resource_for_version`).
 */
export function gatewayServesClient(gatewayVersion: string | undefined, clientVersion: string | undefined, resourceType?: string): boolean {
  if (clientVersion === undefined) return true;
  const client = parseVersion(clientVersion);
  const gateway = parseVersion(gatewayVersion);
  if (client === undefined || gateway === undefined) return false;
  if (compare(gateway, { major: client.major, minor: client.minor - 1, patch: 0 }) < 0) return false;
  if (compare(gateway, { major: client.major, minor: client.minor + 2, patch: 0 }) >= 0) return false;
  if (resourceType === 'internet' && compare(gateway, { major: 1, minor: 3, patch: 0 }) < 0) return false;
  return true;
}

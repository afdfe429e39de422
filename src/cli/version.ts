/**
 * The one home of the version this implementation matches (official gateway 1.6.0): `--version`,
 * the start-up log, the release artifacts, the metrics resource and the portal's User-Agent all
 * read it. The portal parses it from the User-Agent and routes clients by it, so it stays plain
 * SemVer.
 */
export const GATEWAY_VERSION = '1.6.0';
export const BINARY_NAME = 'firezone-gateway';

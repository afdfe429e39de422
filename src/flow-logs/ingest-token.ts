// The per-authorization flow-log ingest token (spec 2.2.4): an HS256 JWT minted by the portal whose claims carry
// the attribution of every flow of that authorization. The gateway never verifies its signature; it reads the
// claims, uses the raw token as the upload's Bearer credential, and names the spool directory after
// `role`/`policy_authorization_id`. The portal boundary (src/portal) validates the token as the reference does;
// this module only holds the shape the flow-log code needs and the checks that keep claims out of paths.

/** The claims the flow-log code reads (names as on the wire; unknown claims may be present). */
export interface IngestTokenClaims {
  readonly uploads_enabled: boolean;
  readonly role: 'initiator' | 'responder';
  readonly exp: number;
  readonly initiator_device_id: string;
  readonly responder_device_id: string;
  readonly policy_authorization_id: string;
  readonly policy_id: string;
  readonly resource_id: string;
  readonly resource_name: string;
  readonly resource_address?: string | null;
  readonly initiator_actor_id: string;
  readonly initiator_actor_email?: string | null;
  readonly initiator_actor_name: string;
  readonly initiator_auth_provider_id?: string | null;
  readonly authorized_at: string;
  readonly authorization_expires_at: string;
  readonly initiator_client_version?: string | null;
  readonly initiator_device_os_name?: string | null;
  readonly initiator_device_os_version?: string | null;
  readonly initiator_device_serial?: string | null;
  readonly initiator_device_uuid?: string | null;
  readonly initiator_device_identifier_for_vendor?: string | null;
  readonly initiator_device_firebase_installation_id?: string | null;
}

export interface IngestToken {
  /** The JWT as received: the Bearer credential. Never logged. */
  readonly raw: string;
  readonly claims: IngestTokenClaims;
}

/** The claims that become the spool path, checked so an unverified token cannot name an arbitrary directory. */
export interface SpoolRoute {
  readonly role: 'initiator' | 'responder';
  readonly authorizationId: string;
}

export function spoolRouteOf(claims: Pick<IngestTokenClaims, 'role' | 'policy_authorization_id'>): SpoolRoute | undefined {
  if (!isValidRole(claims.role) || !isValidAuthorizationId(claims.policy_authorization_id)) return undefined;
  return { role: claims.role, authorizationId: claims.policy_authorization_id };
}

export function isValidRole(role: unknown): role is 'initiator' | 'responder' {
  return role === 'initiator' || role === 'responder';
}

const HYPHENATED_UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Only a hyphenated UUID may become a path component. */
export function isValidAuthorizationId(id: unknown): id is string {
  return typeof id === 'string' && HYPHENATED_UUID.test(id);
}

/** The payload segment of a JWT as a JSON object, without any verification; undefined when it is not one. */
export function decodeJwtPayload(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]*$/.test(parts[1]!)) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The `exp` claim (unix seconds) of a stored token, or undefined when it cannot be read. */
export function tokenExpiry(token: string): number | undefined {
  const exp = decodeJwtPayload(token.trim())?.['exp'];
  return typeof exp === 'number' && Number.isInteger(exp) && exp >= 0 ? exp : undefined;
}

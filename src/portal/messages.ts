/**
 * Gateway channel messages (spec gateway-1.6 §2; the 1.4.13 dialect in spec portal-protocol §2-§3).
 * `decodeIngress` turns an (event, payload) pair from the Phoenix channel into an
 * `IngressMessage`; anything unknown or malformed becomes an error value for the caller to log
 * once as a warning and drop (the reference drops the whole frame too). `encodeEgress` produces
 * the (event, payload) to send.
 *
 * Two dialects, chosen by the socket path (§1.4): `v2` (`/gateway/v2/websocket`) is exactly what
 * 1.6.0 accepts: `create_authorization` with its required ingest token, `init` with its required
 * `flow_logs` and `authorizations[].expires_at`, `access_authorization_expiry_updated`. `v1`
 * (`/gateway/websocket`, older portals) is 1.4.13's set (`authorize_flow`, the legacy
 * `request_connection`/`allow_access`) made tolerant of both ages of portal: `flow_logs`,
 * `expires_at` and the ingest token optional (a token that is present is still validated), as
 * the spec's §5 recommends. `any` (the default, for tests and tools) accepts both sets.
 */
import { z } from 'zod';
import {
  clientIdSchema,
  iceCredentialsSchema,
  interfaceSchema,
  ipSchema,
  ipv4Schema,
  ipv6Schema,
  keySchema,
  relayIdSchema,
  relaySchema,
  resourceDescriptionSchema,
  resourceIdSchema,
  unixSecondsSchema,
  type ClientId,
  type IceCredentials,
  type Interface,
  type Key,
  type Relay,
  type RelayId,
  type ResourceDescription,
  type ResourceId,
} from './message-types.ts';
import { parseIngestToken, type IngestToken } from './ingest-token.ts';

/** Which portal channel the messages come from: the socket path decides (spec gateway-1.6 §1.4). */
export type PortalDialect = 'v1' | 'v2';

export type IngressMessage =
  | InitMessage
  | CreateAuthorizationMessage
  | AccessAuthorizationExpiryUpdatedMessage
  | RejectAccessMessage
  | ResourceUpdatedMessage
  | RelaysPresenceMessage
  | IceCandidatesMessage
  | InvalidateIceCandidatesMessage
  | RequestConnectionMessage
  | AllowAccessMessage;

export interface InitMessage {
  readonly kind: 'init';
  readonly interface: Interface;
  /** Always sent by the portal; the gateway ignores the values. */
  readonly config: { readonly ipv4MasqueradeEnabled: boolean; readonly ipv6MasqueradeEnabled: boolean };
  readonly relays: readonly Relay[];
  readonly accountSlug: string | undefined;
  /**
   * Undefined when the key is absent (older portals): nothing may be revoked then. Present
   * (even empty), every authorization not listed is revoked.
   */
  readonly authorizations: readonly Authorization[] | undefined;
  /**
   * The flow-log upload configuration (1.6.0, required on v2); undefined from portals that do not
   * send it (v1), which means uploads are disabled.
   */
  readonly flowLogs: FlowLogsConfig | undefined;
}

export interface Authorization {
  readonly clientId: ClientId;
  readonly resourceId: ResourceId;
  /** Unix seconds (1.6.0: required and applied); undefined from portals that do not send it (v1). */
  readonly expiresAt: number | undefined;
}

export interface FlowLogsConfig {
  /** Base URL the flow logs are POSTed to (`<apiUrl>/ingestion/flow_logs`). */
  readonly apiUrl: string;
  /** Seconds between uploads; 0 disables uploads. */
  readonly uploadIntervalSecs: number;
  /** Records per upload request; 0 means the default. */
  readonly uploadBatchSize: number;
}

/** `create_authorization` (v2) or `authorize_flow` (v1): the same payload, answered by `ackEvent`. */
export interface CreateAuthorizationMessage {
  readonly kind: 'createAuthorization';
  /** The answer the portal expects on this path: `authorization_created` (v2) or `flow_authorized` (v1). */
  readonly ackEvent: 'authorization_created' | 'flow_authorized';
  /** Opaque signed token, echoed verbatim in the answer. */
  readonly ref: string;
  readonly resource: ResourceDescription;
  readonly client: FlowClient;
  readonly clientIceCredentials: IceCredentials;
  readonly gatewayIceCredentials: IceCredentials;
  /** Unix seconds; undefined never expires. */
  readonly expiresAt: number | undefined;
  /** The portal chose an ICE-less connection (1.6.0; false when absent). */
  readonly useIceless: boolean;
  /** The flow-logs ingest token: always present on v2 (required), optional on v1. */
  readonly ingestToken: IngestToken | undefined;
}

/** @deprecated the 1.4.13 name of `CreateAuthorizationMessage`. */
export type AuthorizeFlowMessage = CreateAuthorizationMessage;

/** Obsolete in 1.6.0: parsed and ignored. */
export interface AccessAuthorizationExpiryUpdatedMessage {
  readonly kind: 'accessAuthorizationExpiryUpdated';
  readonly clientId: ClientId;
  readonly resourceId: ResourceId;
  /** Unix seconds. */
  readonly expiresAt: number;
}

export interface FlowClient {
  readonly id: ClientId;
  readonly publicKey: Key;
  readonly presharedKey: Key;
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface RejectAccessMessage {
  readonly kind: 'rejectAccess';
  readonly clientId: ClientId;
  readonly resourceId: ResourceId;
}

export interface ResourceUpdatedMessage {
  readonly kind: 'resourceUpdated';
  readonly resource: ResourceDescription;
}

export interface RelaysPresenceMessage {
  readonly kind: 'relaysPresence';
  readonly disconnectedIds: readonly RelayId[];
  readonly connected: readonly Relay[];
}

export interface IceCandidatesMessage {
  readonly kind: 'iceCandidates';
  readonly clientId: ClientId;
  readonly candidates: readonly string[];
}

export interface InvalidateIceCandidatesMessage {
  readonly kind: 'invalidateIceCandidates';
  readonly clientId: ClientId;
  readonly candidates: readonly string[];
}

/** Deprecated flow set-up for clients older than 1.4. */
export interface RequestConnectionMessage {
  readonly kind: 'requestConnection';
  readonly ref: string;
  readonly resource: ResourceDescription;
  readonly client: {
    readonly id: ClientId;
    readonly peer: Peer;
    readonly payload: { readonly iceParameters: IceCredentials; readonly domain: ResolveRequest | undefined };
  };
  readonly expiresAt: number | undefined;
}

/** Deprecated; never answered. */
export interface AllowAccessMessage {
  readonly kind: 'allowAccess';
  readonly ref: string;
  readonly clientId: ClientId;
  readonly resource: ResourceDescription;
  readonly expiresAt: number | undefined;
  readonly payload: ResolveRequest | undefined;
  readonly clientIpv4: string;
  readonly clientIpv6: string;
}

export interface Peer {
  readonly publicKey: Key;
  readonly presharedKey: Key;
  readonly ipv4: string;
  readonly ipv6: string;
  readonly persistentKeepalive: number | undefined;
}

export interface ResolveRequest {
  readonly name: string;
  readonly proxyIps: readonly string[];
}

export type IngressEvent =
  | 'init'
  | 'create_authorization'
  | 'access_authorization_expiry_updated'
  | 'authorize_flow'
  | 'reject_access'
  | 'resource_updated'
  | 'relays_presence'
  | 'ice_candidates'
  | 'invalidate_ice_candidates'
  | 'request_connection'
  | 'allow_access';

export type MessageDecodeError =
  | { readonly code: 'unknownEvent'; readonly event: string }
  | { readonly code: 'invalidPayload'; readonly event: string; readonly detail: string };

export type IngressDecodeResult =
  | { readonly ok: true; readonly message: IngressMessage }
  | { readonly ok: false; readonly error: MessageDecodeError };

const nullableExpiry = unixSecondsSchema.nullable().transform((value) => value ?? undefined);

const resolveRequestSchema = z
  .object({ name: z.string().min(1), proxy_ips: z.array(ipSchema) })
  .transform((request): ResolveRequest => ({ name: request.name, proxyIps: request.proxy_ips }));

const peerSchema = z
  .object({
    persistent_keepalive: z.number().int().min(0).max(0xffff).nullish(),
    public_key: keySchema,
    preshared_key: keySchema,
    ipv4: ipv4Schema,
    ipv6: ipv6Schema,
  })
  .transform(
    (peer): Peer => ({
      publicKey: peer.public_key,
      presharedKey: peer.preshared_key,
      ipv4: peer.ipv4,
      ipv6: peer.ipv6,
      persistentKeepalive: peer.persistent_keepalive ?? undefined,
    }),
  );

const u64Schema = z.number().int().min(0);

const flowLogsSchema = z
  .object({ api_url: z.string(), upload_interval_secs: u64Schema, upload_batch_size: u64Schema })
  .transform(
    (config): FlowLogsConfig => ({
      apiUrl: config.api_url,
      uploadIntervalSecs: config.upload_interval_secs,
      uploadBatchSize: config.upload_batch_size,
    }),
  );

const ingestTokenSchema = z.string().transform((raw, ctx): IngestToken => {
  const parsed = parseIngestToken(raw);
  if (!parsed.ok) {
    ctx.addIssue({ code: 'custom', message: parsed.error });
    return z.NEVER;
  }
  return parsed.token;
});

/**
 * An SDP `candidate:` line whose 4th field is a u32 priority, as 1.6.0's `IceCandidate` parses it;
 * entries that are not are skipped one by one, not the whole message (`VecSkipError`).
 */
export function candidatePriority(sdp: string): number | undefined {
  if (!sdp.startsWith('candidate:')) return undefined;
  const field = sdp.split(/[\t\n\f\r ]+/).filter((part) => part !== '')[3];
  if (field === undefined || !/^\+?[0-9]+$/.test(field)) return undefined;
  const priority = Number(field);
  return priority <= 0xffff_ffff ? priority : undefined;
}

const candidateListSchema = z.array(z.unknown()).transform((entries) =>
  entries.filter((entry): entry is string => typeof entry === 'string' && candidatePriority(entry) !== undefined),
);

function initSchema(strict: boolean) {
  return z
    .object({
      interface: interfaceSchema,
      config: z.object({ ipv4_masquerade_enabled: z.boolean(), ipv6_masquerade_enabled: z.boolean() }),
      relays: z.array(relaySchema).optional(),
      account_slug: z.string().nullish(),
      authorizations: z
        .array(z.object({ client_id: clientIdSchema, resource_id: resourceIdSchema, expires_at: strict ? u64Schema : u64Schema.optional() }))
        .optional(),
      flow_logs: strict ? flowLogsSchema : flowLogsSchema.optional(),
    })
    .transform(
      (init): InitMessage => ({
        kind: 'init',
        interface: init.interface,
        config: {
          ipv4MasqueradeEnabled: init.config.ipv4_masquerade_enabled,
          ipv6MasqueradeEnabled: init.config.ipv6_masquerade_enabled,
        },
        relays: init.relays ?? [],
        accountSlug: init.account_slug ?? undefined,
        authorizations: init.authorizations?.map((a) => ({ clientId: a.client_id, resourceId: a.resource_id, expiresAt: a.expires_at })),
        flowLogs: init.flow_logs,
      }),
    );
}

const flowClientSchema = z.object({
  id: clientIdSchema,
  public_key: keySchema,
  preshared_key: keySchema,
  ipv4: ipv4Schema,
  ipv6: ipv6Schema,
});

function createAuthorizationSchema(ackEvent: CreateAuthorizationMessage['ackEvent']) {
  const v2 = ackEvent === 'authorization_created';
  return z
    .object({
      ref: z.string(),
      resource: resourceDescriptionSchema,
      gateway_ice_credentials: iceCredentialsSchema,
      client: flowClientSchema,
      client_ice_credentials: iceCredentialsSchema,
      // 1.6.0 reads unsigned seconds, absent or null meaning "never" (spec §2.2.4's reading of
      // serde_with's Option default); 1.4.13 signed seconds, the key required but nullable.
      expires_at: v2 ? u64Schema.nullish().transform((value) => value ?? undefined) : nullableExpiry,
      use_iceless: z.boolean().optional(),
      flow_logs_ingest_token: v2 ? ingestTokenSchema : ingestTokenSchema.optional(),
    })
    .transform(
      (flow): CreateAuthorizationMessage => ({
        kind: 'createAuthorization',
        ackEvent,
        ref: flow.ref,
        resource: flow.resource,
        client: {
          id: flow.client.id,
          publicKey: flow.client.public_key,
          presharedKey: flow.client.preshared_key,
          ipv4: flow.client.ipv4,
          ipv6: flow.client.ipv6,
        },
        clientIceCredentials: flow.client_ice_credentials,
        gatewayIceCredentials: flow.gateway_ice_credentials,
        expiresAt: flow.expires_at,
        useIceless: flow.use_iceless ?? false,
        ingestToken: flow.flow_logs_ingest_token,
      }),
    );
}

const clientCandidatesSchema = z.object({ client_id: clientIdSchema, candidates: candidateListSchema });

/** The messages both dialects share (spec gateway-1.6 §1.4: identical on both paths). */
const commonSchemas = {
  reject_access: z
    .object({ client_id: clientIdSchema, resource_id: resourceIdSchema })
    .transform((reject): RejectAccessMessage => ({ kind: 'rejectAccess', clientId: reject.client_id, resourceId: reject.resource_id })),
  resource_updated: resourceDescriptionSchema.transform((resource): ResourceUpdatedMessage => ({ kind: 'resourceUpdated', resource })),
  relays_presence: z
    .object({ disconnected_ids: z.array(relayIdSchema), connected: z.array(relaySchema) })
    .transform(
      (presence): RelaysPresenceMessage => ({
        kind: 'relaysPresence',
        disconnectedIds: presence.disconnected_ids,
        connected: presence.connected,
      }),
    ),
  ice_candidates: clientCandidatesSchema.transform(
    (message): IceCandidatesMessage => ({ kind: 'iceCandidates', clientId: message.client_id, candidates: message.candidates }),
  ),
  invalidate_ice_candidates: clientCandidatesSchema.transform(
    (message): InvalidateIceCandidatesMessage => ({
      kind: 'invalidateIceCandidates',
      clientId: message.client_id,
      candidates: message.candidates,
    }),
  ),
  access_authorization_expiry_updated: z
    .object({ client_id: clientIdSchema, resource_id: resourceIdSchema, expires_at: u64Schema })
    .transform(
      (m): AccessAuthorizationExpiryUpdatedMessage => ({
        kind: 'accessAuthorizationExpiryUpdated',
        clientId: m.client_id,
        resourceId: m.resource_id,
        expiresAt: m.expires_at,
      }),
    ),
};

const legacySchemas = {
  request_connection: z
    .object({
      resource: resourceDescriptionSchema,
      client: z.object({
        id: clientIdSchema,
        payload: z.object({ ice_parameters: iceCredentialsSchema, domain: resolveRequestSchema.nullish() }),
        peer: peerSchema,
      }),
      ref: z.string(),
      expires_at: nullableExpiry,
    })
    .transform(
      (request): RequestConnectionMessage => ({
        kind: 'requestConnection',
        ref: request.ref,
        resource: request.resource,
        client: {
          id: request.client.id,
          peer: request.client.peer,
          payload: {
            iceParameters: request.client.payload.ice_parameters,
            domain: request.client.payload.domain ?? undefined,
          },
        },
        expiresAt: request.expires_at,
      }),
    ),
  allow_access: z
    .object({
      client_id: clientIdSchema,
      resource: resourceDescriptionSchema,
      expires_at: nullableExpiry,
      payload: resolveRequestSchema.nullish(),
      ref: z.string(),
      client_ipv4: ipv4Schema,
      client_ipv6: ipv6Schema,
    })
    .transform(
      (allow): AllowAccessMessage => ({
        kind: 'allowAccess',
        ref: allow.ref,
        clientId: allow.client_id,
        resource: allow.resource,
        expiresAt: allow.expires_at,
        payload: allow.payload ?? undefined,
        clientIpv4: allow.client_ipv4,
        clientIpv6: allow.client_ipv6,
      }),
    ),
};

type IngressSchemas = Partial<Record<IngressEvent, z.ZodType<IngressMessage>>>;

/** Exactly 1.6.0's `IngressMessages` (spec gateway-1.6 §2.1). */
const v2Schemas: IngressSchemas = {
  ...commonSchemas,
  init: initSchema(true),
  create_authorization: createAuthorizationSchema('authorization_created'),
};

/** 1.4.13's set, tolerant of newer fields (spec gateway-1.6 §5). */
const v1Schemas: IngressSchemas = {
  ...commonSchemas,
  ...legacySchemas,
  init: initSchema(false),
  authorize_flow: createAuthorizationSchema('flow_authorized'),
};

const anySchemas: IngressSchemas = { ...v1Schemas, create_authorization: v2Schemas.create_authorization };

const schemasByDialect: Readonly<Record<PortalDialect | 'any', IngressSchemas>> = { v1: v1Schemas, v2: v2Schemas, any: anySchemas };

export function isIngressEvent(event: string, dialect: PortalDialect | 'any' = 'any'): event is IngressEvent {
  return Object.prototype.hasOwnProperty.call(schemasByDialect[dialect], event);
}

/** Never throws. `dialect` is the socket path's (`any`: both sets, for tests and tools). */
export function decodeIngress(event: string, payload: unknown, dialect: PortalDialect | 'any' = 'any'): IngressDecodeResult {
  const schema = Object.prototype.hasOwnProperty.call(schemasByDialect[dialect], event) ? schemasByDialect[dialect][event as IngressEvent] : undefined;
  if (schema === undefined) return { ok: false, error: { code: 'unknownEvent', event } };
  const result = schema.safeParse(payload);
  if (!result.success) return { ok: false, error: { code: 'invalidPayload', event, detail: describeIssues(result.error) } };
  return { ok: true, message: result.data };
}

// ---- egress ----

export type EgressMessage =
  /** 1.6.0's answer to `create_authorization` (v2). */
  | { readonly kind: 'authorizationCreated'; readonly ref: string }
  /** 1.4.13's answer to `authorize_flow` (v1). */
  | { readonly kind: 'flowAuthorized'; readonly ref: string }
  /** No TURN relay to allocate from: the portal answers with `relays_presence`. */
  | { readonly kind: 'noRelays' }
  /** Sent after every join; `iceless` only once ICE-less connections are implemented. */
  | { readonly kind: 'setSnownetCapabilities'; readonly iceless: boolean }
  | { readonly kind: 'broadcastIceCandidates'; readonly clientIds: readonly ClientId[]; readonly candidates: Iterable<string> }
  | {
      readonly kind: 'broadcastInvalidatedIceCandidates';
      readonly clientIds: readonly ClientId[];
      readonly candidates: Iterable<string>;
    }
  /** Deprecated answer to `request_connection`. */
  | { readonly kind: 'connectionReady'; readonly ref: string; readonly iceParameters: IceCredentials };

export type EgressEvent =
  | 'authorization_created'
  | 'flow_authorized'
  | 'no_relays'
  | 'set_snownet_capabilities'
  | 'broadcast_ice_candidates'
  | 'broadcast_invalidated_ice_candidates'
  | 'connection_ready';

export interface EncodedMessage {
  readonly event: EgressEvent;
  readonly payload: Readonly<Record<string, unknown>>;
}

/**
 * Candidates go out de-duplicated and ordered as 1.6.0's `BTreeSet<IceCandidate>`: SDP priority
 * descending, ties by text (an unparseable entry counts as priority 0).
 */
export function encodeEgress(message: EgressMessage): EncodedMessage {
  switch (message.kind) {
    case 'authorizationCreated':
      return { event: 'authorization_created', payload: { ref: message.ref } };
    case 'flowAuthorized':
      return { event: 'flow_authorized', payload: { ref: message.ref } };
    case 'noRelays':
      return { event: 'no_relays', payload: {} };
    case 'setSnownetCapabilities':
      return { event: 'set_snownet_capabilities', payload: { iceless: message.iceless } };
    case 'broadcastIceCandidates':
      return {
        event: 'broadcast_ice_candidates',
        payload: { client_ids: [...message.clientIds], candidates: sortedUnique(message.candidates) },
      };
    case 'broadcastInvalidatedIceCandidates':
      return {
        event: 'broadcast_invalidated_ice_candidates',
        payload: { client_ids: [...message.clientIds], candidates: sortedUnique(message.candidates) },
      };
    case 'connectionReady':
      return {
        event: 'connection_ready',
        payload: {
          ref: message.ref,
          gateway_payload: {
            ConnectionAccepted: {
              ice_parameters: { username: message.iceParameters.username, password: message.iceParameters.password },
            },
          },
        },
      };
  }
}

const clientsCandidatesSchema = z.object({ client_ids: z.array(clientIdSchema), candidates: z.array(z.string()) });

const egressSchemas = {
  authorization_created: z.object({ ref: z.string() }).transform((m): EgressMessage => ({ kind: 'authorizationCreated', ref: m.ref })),
  flow_authorized: z.object({ ref: z.string() }).transform((m): EgressMessage => ({ kind: 'flowAuthorized', ref: m.ref })),
  no_relays: z.object({}).transform((): EgressMessage => ({ kind: 'noRelays' })),
  // Booleans only, each false when absent, unknown ones ignored (spec gateway-1.6 §2.3.4).
  set_snownet_capabilities: z
    .object({ iceless: z.boolean().optional() })
    .transform((m): EgressMessage => ({ kind: 'setSnownetCapabilities', iceless: m.iceless ?? false })),
  broadcast_ice_candidates: clientsCandidatesSchema.transform(
    (m): EgressMessage => ({ kind: 'broadcastIceCandidates', clientIds: m.client_ids, candidates: m.candidates }),
  ),
  broadcast_invalidated_ice_candidates: clientsCandidatesSchema.transform(
    (m): EgressMessage => ({ kind: 'broadcastInvalidatedIceCandidates', clientIds: m.client_ids, candidates: m.candidates }),
  ),
  connection_ready: z
    .object({ ref: z.string(), gateway_payload: z.object({ ConnectionAccepted: z.object({ ice_parameters: iceCredentialsSchema }) }) })
    .transform(
      (m): EgressMessage => ({ kind: 'connectionReady', ref: m.ref, iceParameters: m.gateway_payload.ConnectionAccepted.ice_parameters }),
    ),
} satisfies Record<EgressEvent, z.ZodType<EgressMessage>>;

export type EgressDecodeResult =
  | { readonly ok: true; readonly message: EgressMessage }
  | { readonly ok: false; readonly error: MessageDecodeError };

/** The portal side of `encodeEgress`, for the development portal and tests. Never throws. */
export function decodeEgress(event: string, payload: unknown): EgressDecodeResult {
  if (!Object.prototype.hasOwnProperty.call(egressSchemas, event)) return { ok: false, error: { code: 'unknownEvent', event } };
  const result = egressSchemas[event as EgressEvent].safeParse(payload);
  if (!result.success) return { ok: false, error: { code: 'invalidPayload', event, detail: describeIssues(result.error) } };
  return { ok: true, message: result.data };
}

export function describeMessageDecodeError(error: MessageDecodeError): string {
  switch (error.code) {
    case 'unknownEvent':
      return `unknown event \`${error.event}\``;
    case 'invalidPayload':
      return `invalid \`${error.event}\` payload: ${error.detail}`;
  }
}

function sortedUnique(candidates: Iterable<string>): string[] {
  return [...new Set(candidates)]
    .map((sdp) => ({ sdp, priority: candidatePriority(sdp) ?? 0 }))
    .sort((a, b) => b.priority - a.priority || compareCodeUnits(a.sdp, b.sdp))
    .map((entry) => entry.sdp);
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(payload)'}: ${issue.message}`)
    .join('; ');
}


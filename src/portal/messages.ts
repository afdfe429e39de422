/**
 * Gateway channel messages (spec portal-protocol §2 ingress, §3 egress). `decodeIngress` turns an
 * (event, payload) pair from the Phoenix channel into an `IngressMessage`; anything unknown or
 * malformed becomes an error value for the caller to log once as a warning and drop (the
 * reference drops the whole frame too). `encodeEgress` produces the (event, payload) to send.
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

export type IngressMessage =
  | InitMessage
  | AuthorizeFlowMessage
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
}

export interface Authorization {
  readonly clientId: ClientId;
  readonly resourceId: ResourceId;
}

export interface AuthorizeFlowMessage {
  readonly kind: 'authorizeFlow';
  /** Opaque signed token, echoed verbatim in `flow_authorized`. */
  readonly ref: string;
  readonly resource: ResourceDescription;
  readonly client: FlowClient;
  readonly clientIceCredentials: IceCredentials;
  readonly gatewayIceCredentials: IceCredentials;
  /** Unix seconds; undefined never expires. */
  readonly expiresAt: number | undefined;
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

const clientCandidatesSchema = z.object({ client_id: clientIdSchema, candidates: z.array(z.string()) });

const ingressSchemas = {
  init: z
    .object({
      interface: interfaceSchema,
      config: z.object({ ipv4_masquerade_enabled: z.boolean(), ipv6_masquerade_enabled: z.boolean() }),
      relays: z.array(relaySchema).optional(),
      account_slug: z.string().nullish(),
      authorizations: z.array(z.object({ client_id: clientIdSchema, resource_id: resourceIdSchema })).optional(),
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
        authorizations: init.authorizations?.map((a) => ({ clientId: a.client_id, resourceId: a.resource_id })),
      }),
    ),
  authorize_flow: z
    .object({
      ref: z.string(),
      resource: resourceDescriptionSchema,
      gateway_ice_credentials: iceCredentialsSchema,
      client: z.object({
        id: clientIdSchema,
        public_key: keySchema,
        preshared_key: keySchema,
        ipv4: ipv4Schema,
        ipv6: ipv6Schema,
      }),
      client_ice_credentials: iceCredentialsSchema,
      expires_at: nullableExpiry,
    })
    .transform(
      (flow): AuthorizeFlowMessage => ({
        kind: 'authorizeFlow',
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
      }),
    ),
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
} satisfies Record<IngressEvent, z.ZodType<IngressMessage>>;

export function isIngressEvent(event: string): event is IngressEvent {
  return Object.prototype.hasOwnProperty.call(ingressSchemas, event);
}

/** Never throws. */
export function decodeIngress(event: string, payload: unknown): IngressDecodeResult {
  if (!isIngressEvent(event)) return { ok: false, error: { code: 'unknownEvent', event } };
  const result = ingressSchemas[event].safeParse(payload);
  if (!result.success) return { ok: false, error: { code: 'invalidPayload', event, detail: describeIssues(result.error) } };
  return { ok: true, message: result.data };
}

// ---- egress ----

export type EgressMessage =
  | { readonly kind: 'flowAuthorized'; readonly ref: string }
  | { readonly kind: 'broadcastIceCandidates'; readonly clientIds: readonly ClientId[]; readonly candidates: Iterable<string> }
  | {
      readonly kind: 'broadcastInvalidatedIceCandidates';
      readonly clientIds: readonly ClientId[];
      readonly candidates: Iterable<string>;
    }
  /** Deprecated answer to `request_connection`. */
  | { readonly kind: 'connectionReady'; readonly ref: string; readonly iceParameters: IceCredentials };

export type EgressEvent = 'flow_authorized' | 'broadcast_ice_candidates' | 'broadcast_invalidated_ice_candidates' | 'connection_ready';

export interface EncodedMessage {
  readonly event: EgressEvent;
  readonly payload: Readonly<Record<string, unknown>>;
}

/** Candidates go out de-duplicated and sorted, as the reference's `BTreeSet` does. */
export function encodeEgress(message: EgressMessage): EncodedMessage {
  switch (message.kind) {
    case 'flowAuthorized':
      return { event: 'flow_authorized', payload: { ref: message.ref } };
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
  flow_authorized: z.object({ ref: z.string() }).transform((m): EgressMessage => ({ kind: 'flowAuthorized', ref: m.ref })),
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
  return [...new Set(candidates)].sort(compareCodeUnits);
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


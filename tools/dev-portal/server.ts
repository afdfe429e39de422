// A development portal: speaks the gateway channel (Phoenix V1 JSON over WebSocket) the way the Firezone portal
// does, on both of its paths (spec gateway-1.6 §1, §2): `/gateway/v2/websocket` (the v2 dialect of today's portal)
// and `/gateway/websocket` (v1). With `era: 'legacy'` it plays a portal of the 1.4.13 days instead (portal-protocol
// §1.6-§3): only the v1 path, the token in the query, no flow logs, no ICE-less. Plus two small JSON APIs:
//   /admin/...    for tests and the demo (resources, clients, policies, relays, authorizations, pushes, log);
//   /clients/...  for a headless test client (request a flow, exchange ICE candidates).
// One HTTP server carries all three. This is a tool, not part of the gateway: it uses real timers and the clock.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import { systemRandom } from '../../src/util/random.ts';
import { isoMicros, mintIngestToken, verifyIngestToken } from './ingest-token.ts';
import type { IngestTokenCheck } from './ingest-token.ts';
import { gatewayServesClient, userAgentVersion } from './versions.ts';
import type { RandomSource } from '../../src/util/random.ts';
import { allocateTunnelAddresses } from './addresses.ts';
import { deriveIceCredentials, derivePresharedKey, encodeKey, isValidKey, relayCredentials } from './credentials.ts';
import type { IceCredentials, RelayCredentialScheme } from './credentials.ts';
import {
  addressFamilyOrder,
  checkRelay,
  checkResource,
  isObject,
  isUuid,
  renderResource,
} from './model.ts';
import type { ClientRecord, GatewayRecord, Policy, RelayConfig, Resource } from './model.ts';

/**
 * Which portal to play:
 * - `head` (default): today's portal. `/gateway/v2/websocket` speaks v2 (`create_authorization` /
 *   `authorization_created`), `/gateway/websocket` speaks v1 (`authorize_flow` / `flow_authorized`), both with the
 *   same payloads: `init` with `flow_logs` and `authorizations[].expires_at`, a `flow_logs_ingest_token` and
 *   `use_iceless` per authorization, `set_snownet_capabilities` and `no_relays` accepted. The token comes from
 *   `X-Authorization: Bearer` or else the `token` query parameter; a second socket of a joined gateway gets 409.
 * - `legacy`: a portal from before the v2 path (portal-protocol.md): 404 on `/gateway/v2/websocket`, the token
 *   only from the query, `authorize_flow` in its 1.4.13 shape, `set_snownet_capabilities` and `no_relays` unknown.
 */
export type PortalEra = 'head' | 'legacy';

/** `init.flow_logs` (spec gateway-1.6 §2.2.1). `api_url` defaults to this portal's own URL. */
export interface FlowLogsConfig {
  readonly api_url?: string;
  readonly upload_interval_secs: number;
  readonly upload_batch_size: number;
}

/** What an extra HTTP route may use of the portal. */
export interface DevPortalRouteContext {
  /** Wall clock in Unix milliseconds (the portal's `now`). */
  readonly now: () => number;
  readonly log: (line: string) => void;
  /** Checks a flow-log ingest token as the ingestion endpoint does: HS256 with this portal's key, not expired. */
  verifyIngestToken(token: string): IngestTokenCheck;
}

/**
 * An extra HTTP route (for example the flow-log ingestion endpoint): called for every plain HTTP request before
 * the built-in APIs, with the body unread; it answers and returns true, or returns false to pass the request on.
 */
export type DevPortalRoute = (req: IncomingMessage, res: ServerResponse, url: URL, context: DevPortalRouteContext) => boolean | Promise<boolean>;

export interface DevPortalOptions {
  /** Default `head`. */
  readonly era?: PortalEra;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0 (ephemeral). */
  readonly port?: number;
  /** Gateway tokens accepted on both paths. */
  readonly tokens: readonly string[];
  readonly accountSlug?: string;
  readonly relays?: readonly RelayConfig[];
  /** Default `coturn` (coturn's `use-auth-secret`). */
  readonly relayCredentialScheme?: RelayCredentialScheme;
  /** Default 90 days, as the portal. */
  readonly relayCredentialLifetimeSeconds?: number;
  /** The portal closes a socket after 37 s without inbound data. */
  readonly idleTimeoutMs?: number;
  /** How long a flow request waits for `flow_authorized`. Default 10 s. */
  readonly flowTimeoutMs?: number;
  /** `legacy` only: include `authorizations` in `init` (the portal started doing so the day after 1.4.13's commit). */
  readonly sendInitAuthorizations?: boolean;
  /** `head`: `init.flow_logs`. Default `{api_url: <this portal>, upload_interval_secs: 60, upload_batch_size: 1000}`. */
  readonly flowLogs?: FlowLogsConfig;
  /** `head`: the policies' `flow_log_uploads_enabled`, the `uploads_enabled` claim of ingest tokens. Default true. */
  readonly flowLogUploadsEnabled?: boolean;
  /** `head`: the account's `iceless` feature flag (one of the three conditions of `use_iceless`). Default true. */
  readonly icelessEnabled?: boolean;
  /** `head`: an authorization requested without `expires_at` expires this long after it is granted. Default 7 days. */
  readonly authorizationLifetimeSeconds?: number;
  /** The account's HS256 key for ingest tokens (random by default). */
  readonly ingestSigningKey?: Uint8Array;
  /** Default a fixed UUID. */
  readonly accountId?: string;
  /** Extra HTTP routes, tried in order before the built-in ones. */
  readonly routes?: readonly DevPortalRoute[];
  /**
   * A file the portal's records (gateways with their tunnel IPs, clients, resources, policies, authorizations,
   * keys) are read from at start, if it exists, and written to on close: a restarted portal remembers what the
   * real one keeps in its database, so its `init` lists the authorizations granted before the restart.
   */
  readonly statePath?: string;
  readonly resources?: readonly Resource[];
  readonly clients?: readonly { id: string; publicKey: string; ipv4?: string; ipv6?: string }[];
  readonly policies?: readonly Policy[];
  /** Fixed portal ids for gateways by `external_id` (others get a random UUID on first connect). */
  readonly gatewayIds?: Readonly<Record<string, string>>;
  readonly random?: RandomSource;
  /** Wall clock in Unix milliseconds. */
  readonly now?: () => number;
  readonly log?: (line: string) => void;
}

/** One Phoenix frame as seen on the wire. */
export interface Frame {
  readonly topic: string;
  readonly event: string;
  readonly payload: unknown;
  readonly ref: number | string | null;
}

export interface ReceivedFrame {
  readonly gatewayId: string;
  /** Unix milliseconds. */
  readonly at: number;
  readonly frame: Frame;
}

export interface FlowGrant {
  readonly flow_id: string;
  readonly resource: Record<string, unknown>;
  readonly gateway_id: string;
  readonly gateway_public_key: string;
  readonly gateway_ipv4: string;
  readonly gateway_ipv6: string;
  readonly client: { readonly id: string; readonly ipv4: string; readonly ipv6: string };
  readonly client_ice_credentials: IceCredentials;
  readonly gateway_ice_credentials: IceCredentials;
  readonly preshared_key: string;
  readonly expires_at: number | null;
  readonly authorized: boolean;
  /** `head` only: whether the connection is ICE-less (gateway capable, client asked, account allows). */
  readonly use_iceless?: boolean;
  /** `head` only: the client's (initiator's) ingest token. */
  readonly flow_logs_ingest_token?: string;
}

export interface DevPortal {
  /** `http://host:port`, the base of the admin and client APIs. */
  readonly url: string;
  /** What to pass to the gateway as `--api-url` / `FIREZONE_API_URL`. */
  readonly apiUrl: string;
  readonly port: number;
  /** Frames received from gateways, oldest first. */
  received(event?: string): ReceivedFrame[];
  /** Ids of gateways whose channel is joined. */
  connectedGateways(): string[];
  /** Checks a flow-log ingest token minted by this portal. */
  verifyIngestToken(token: string): IngestTokenCheck;
  close(): Promise<void>;
}

const NINETY_DAYS_S = 90 * 24 * 3600;
const MAX_RECEIVED = 10_000;
const SEVEN_DAYS_S = 7 * 24 * 3600;
const GATEWAY_TOPIC = 'gateway';
const PHOENIX_TOPIC = 'phoenix';
const V1_PATH = '/gateway/websocket';
const V2_PATH = '/gateway/v2/websocket';
const DEFAULT_ACCOUNT_ID = '12f207e0-3b6c-4f0f-9d0f-cc22cf9fbf3c';
/** The portal renders `init.authorizations[].expires_at` as an integer; a flow granted without expiry shows this. */
const NO_EXPIRY_S = 2_145_916_800;

/** The path decides the dialect: v1 pushes `authorize_flow` and takes `flow_authorized`, v2 the new names. */
export type Dialect = 'v1' | 'v2';

interface Flow {
  readonly id: string;
  readonly ref: string;
  readonly clientId: string;
  readonly resourceId: string;
  readonly gatewayId: string;
  readonly grant: FlowGrant;
  /** Granted through the client API under a policy (so deleting the policy revokes it). */
  readonly viaPolicy: boolean;
  /** The gateway's answer: `flow_authorized` / `authorization_created`, or `connection_ready` (legacy `request_connection`). */
  readonly answer: 'authorization' | 'connection_ready';
  /** The `gateway_payload` of a `connection_ready`. */
  gatewayPayload: unknown;
  authorized: boolean;
  readonly waiters: ((authorized: boolean) => void)[];
}

interface GatewaySession {
  readonly ws: WebSocket;
  readonly gateway: GatewayRecord;
  readonly token: string;
  readonly dialect: Dialect;
  joined: boolean;
  /** Set by `set_snownet_capabilities` (`head`); false after every join, as the portal's channel starts. */
  icelessCapable: boolean;
  /** Resources this channel authorized a flow for: they get `resource_updated` (subscriptions die with the socket). */
  readonly subscribedResources: Set<string>;
  idleTimer: NodeJS.Timeout | undefined;
}

interface SavedState {
  readonly psk_base: string;
  readonly ingest_key: string;
  readonly gateways: readonly GatewayRecord[];
  readonly clients: readonly ClientRecord[];
  readonly resources: readonly Resource[];
  readonly policies: readonly Policy[];
  readonly flows: readonly Omit<Flow, 'gatewayPayload' | 'waiters'>[];
}

interface FlowRequest {
  readonly gatewayId: string | undefined;
  /** The client's version (its User-Agent's); undefined is served by every gateway, as the portal does. */
  readonly clientVersion: string | undefined;
  /** The client advertised ICE-less connections. */
  readonly iceless: boolean;
}

interface CandidateEvent {
  readonly seq: number;
  readonly kind: 'candidates' | 'invalidated';
  readonly gateway_id: string;
  readonly candidates: readonly string[];
}

export async function startDevPortal(options: DevPortalOptions): Promise<DevPortal> {
  const portal = new DevPortalServer(options);
  return portal.listen();
}

class DevPortalServer {
  private readonly random: RandomSource;
  /** The secret behind the preshared keys (the portal keeps one per device; one per portal does here). */
  private readonly pskBase = new Uint8Array(32);
  private readonly now: () => number;
  private readonly log: (line: string) => void;
  private readonly era: PortalEra;
  private readonly ingestKey: Uint8Array;
  private readonly routeContext: DevPortalRouteContext;
  /** `http://host:port` once listening (the default `init.flow_logs.api_url`). */
  private baseUrl = '';
  private readonly tokens: Set<string>;
  private readonly resources = new Map<string, Resource>();
  private readonly clients = new Map<string, ClientRecord>();
  private readonly policies = new Map<string, Policy>();
  private readonly relays = new Map<string, RelayConfig>();
  private readonly gatewaysByExternalId = new Map<string, GatewayRecord>();
  private readonly sessions = new Map<string, GatewaySession>();
  private readonly flows = new Map<string, Flow>();
  private readonly flowsByRef = new Map<string, Flow>();
  private readonly receivedFrames: ReceivedFrame[] = [];
  private readonly candidateEvents = new Map<string, CandidateEvent[]>();
  private readonly candidateWaiters = new Map<string, (() => void)[]>();
  private candidateSeq = 0;
  private readonly usedAddresses = new Set<string>();
  private readonly http: Server;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

  constructor(private readonly options: DevPortalOptions) {
    this.random = options.random ?? systemRandom();
    this.random.fill(this.pskBase);
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => {});
    this.era = options.era ?? 'head';
    this.ingestKey = options.ingestSigningKey ?? this.randomBytes(32);
    this.routeContext = { now: this.now, log: this.log, verifyIngestToken: (token) => this.checkIngestToken(token) };
    this.tokens = new Set(options.tokens);
    for (const relay of options.relays ?? []) this.relays.set(relay.id, relay);
    for (const resource of options.resources ?? []) this.resources.set(resource.id, resource);
    for (const policy of options.policies ?? []) this.policies.set(policy.id, policy);
    for (const client of options.clients ?? []) this.upsertClient(client.id, client.publicKey, client.ipv4, client.ipv6);
    if (options.statePath !== undefined && existsSync(options.statePath)) this.restore(JSON.parse(readFileSync(options.statePath, 'utf8')) as SavedState);
    this.http = createServer((req, res) => void this.handleHttp(req, res));
    // Many clients of one process (tools/load-client) keep sockets to us alive between requests. With
    // Node's 5 s, a socket idle that long is closed here while a request on it may already be under
    // way whenever this process stalls on a loaded machine (the client sees ECONNRESET); a client
    // agent drops its idle sockets long before 65 s.
    this.http.keepAliveTimeout = 65_000;
    this.http.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket, head));
  }

  async listen(): Promise<DevPortal> {
    const host = this.options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.options.port ?? 0, host, () => resolve());
    });
    const { port } = this.http.address() as AddressInfo;
    const hostForUrl = host.includes(':') ? `[${host}]` : host;
    this.baseUrl = `http://${hostForUrl}:${port}`;
    return {
      url: `http://${hostForUrl}:${port}`,
      apiUrl: `ws://${hostForUrl}:${port}`,
      port,
      received: (event) => this.receivedFrames.filter((r) => event === undefined || r.frame.event === event),
      connectedGateways: () => [...this.sessions.values()].filter((s) => s.joined).map((s) => s.gateway.id),
      verifyIngestToken: (token) => this.checkIngestToken(token),
      close: () => this.close(),
    };
  }

  private async close(): Promise<void> {
    for (const session of this.sessions.values()) {
      clearTimeout(session.idleTimer);
      session.ws.terminate();
    }
    for (const flow of this.flows.values()) this.settleFlow(flow, false);
    for (const waiters of this.candidateWaiters.values()) for (const wake of waiters) wake();
    this.candidateWaiters.clear();
    this.wss.close();
    if (this.options.statePath !== undefined) writeFileSync(this.options.statePath, JSON.stringify(this.saved()));
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  // --- Gateway WebSocket (§1.6) ---

  private handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://portal');
    const dialect: Dialect | undefined = url.pathname === V1_PATH ? 'v1' : url.pathname === V2_PATH && this.era === 'head' ? 'v2' : undefined;
    if (dialect === undefined) return rejectUpgrade(socket, 404, 'Not Found', 'Not Found');
    const origin = req.headers.origin;
    if (origin !== undefined && new URL(origin, 'http://invalid').host !== req.headers.host) {
      return rejectUpgrade(socket, 403, 'Forbidden', 'Origin not allowed');
    }
    const token = this.extractToken(req, url);
    if (token === undefined) return rejectUpgrade(socket, 401, 'Unauthorized', 'Missing token');
    if (!this.tokens.has(token)) return rejectUpgrade(socket, 401, 'Unauthorized', 'Invalid token');

    const problems: string[] = [];
    // Today's portal also takes the device id as `firezone_id`.
    const externalId = url.searchParams.get('external_id') ?? (this.era === 'head' ? url.searchParams.get('firezone_id') : null) ?? '';
    const name = (url.searchParams.get('name') ?? '').trim();
    const publicKey = url.searchParams.get('public_key') ?? '';
    const userAgent = req.headers['user-agent'] ?? '';
    // A User-Agent without a version is let through; such a gateway is never chosen for a versioned client.
    const version = userAgentVersion(userAgent)?.slice(0, 255);
    if (externalId === '') problems.push("external_id: can't be blank");
    if (name === '' || name.length > 255) problems.push('name: should be 1 to 255 characters');
    if (!isValidKey(publicKey)) problems.push('public_key: is invalid');
    if (problems.length > 0) {
      const [status, reason] = this.era === 'head' ? [400, 'Bad Request'] : [422, 'Unprocessable Entity'];
      return rejectUpgrade(socket, status, reason, `Invalid or missing connection parameters: ${problems.join('\n')}`);
    }
    const known = this.gatewaysByExternalId.get(externalId);
    if (this.era === 'head' && known !== undefined && this.sessions.get(known.id)?.joined === true) {
      return rejectUpgrade(socket, 409, 'Conflict', 'A gateway with this ID is already connected');
    }

    const gateway = this.upsertGateway(externalId, name, publicKey, userAgent, version);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.acceptGateway(ws, gateway, token, dialect));
  }

  /**
   * Today's portal reads `X-Authorization: Bearer <token>` first, then the `token` query parameter; the legacy
   * portal only the query. An empty token counts as missing.
   */
  private extractToken(req: IncomingMessage, url: URL): string | undefined {
    if (this.era === 'head') {
      const header = req.headers['x-authorization'];
      const value = Array.isArray(header) ? header[0] : header;
      if (value !== undefined && value.startsWith('Bearer ') && value.length > 'Bearer '.length) return value.slice('Bearer '.length);
    }
    const token = url.searchParams.get('token');
    return token === null || token === '' ? undefined : token;
  }

  private upsertGateway(externalId: string, name: string, publicKey: string, userAgent: string, version: string | undefined): GatewayRecord {
    const existing = this.gatewaysByExternalId.get(externalId);
    if (existing !== undefined) {
      existing.name = name;
      existing.publicKey = publicKey;
      existing.userAgent = userAgent;
      existing.version = version;
      return existing;
    }
    const addresses = allocateTunnelAddresses(this.random, this.usedAddresses);
    this.usedAddresses.add(addresses.ipv4).add(addresses.ipv6);
    const id = this.options.gatewayIds?.[externalId] ?? this.newId();
    const gateway: GatewayRecord = { id, externalId, name, publicKey, userAgent, version, ...addresses };
    this.gatewaysByExternalId.set(externalId, gateway);
    return gateway;
  }

  private acceptGateway(ws: WebSocket, gateway: GatewayRecord, token: string, dialect: Dialect): void {
    const previous = this.sessions.get(gateway.id);
    if (previous !== undefined) previous.ws.terminate();
    const session: GatewaySession = { ws, gateway, token, dialect, joined: false, icelessCapable: false, subscribedResources: new Set(), idleTimer: undefined };
    this.sessions.set(gateway.id, session);
    this.log(`gateway ${gateway.id} connected on ${dialect === 'v2' ? V2_PATH : V1_PATH} (${gateway.userAgent})`);
    this.armIdleTimer(session);
    ws.on('message', (data: RawData) => this.handleFrame(session, data));
    ws.on('close', () => {
      clearTimeout(session.idleTimer);
      if (this.sessions.get(gateway.id) === session) this.sessions.delete(gateway.id);
      this.log(`gateway ${gateway.id} disconnected`);
    });
    ws.on('error', () => ws.terminate());
  }

  private armIdleTimer(session: GatewaySession): void {
    clearTimeout(session.idleTimer);
    session.idleTimer = setTimeout(() => session.ws.close(), this.options.idleTimeoutMs ?? 37_000);
  }

  private handleFrame(session: GatewaySession, data: RawData): void {
    this.armIdleTimer(session);
    const frame = parseFrame(data);
    if (frame === undefined) return;
    this.receivedFrames.push({ gatewayId: session.gateway.id, at: this.now(), frame });
    if (this.receivedFrames.length > MAX_RECEIVED) this.receivedFrames.shift();

    if (frame.topic === PHOENIX_TOPIC) {
      if (frame.event === 'heartbeat') this.reply(session, frame, 'ok', {});
      return;
    }
    if (frame.topic !== GATEWAY_TOPIC) {
      this.reply(session, frame, 'error', { reason: 'unmatched topic' });
      return;
    }
    if (frame.event === 'phx_join') {
      this.join(session, frame);
      return;
    }
    if (!session.joined) {
      this.reply(session, frame, 'error', { reason: 'unmatched topic' });
      return;
    }
    this.handleChannelMessage(session, frame);
  }

  private join(session: GatewaySession, frame: Frame): void {
    if (session.joined) this.send(session, { topic: GATEWAY_TOPIC, event: 'phx_close', payload: {}, ref: null });
    session.joined = true;
    session.icelessCapable = false;
    session.subscribedResources.clear();
    this.reply(session, frame, 'ok', {});
    this.push(session, 'init', this.initPayload(session.gateway));
    this.log(`gateway ${session.gateway.id} joined`);
  }

  private handleChannelMessage(session: GatewaySession, frame: Frame): void {
    const payload = isObject(frame.payload) ? frame.payload : {};
    const head = this.era === 'head';
    switch (frame.event) {
      case 'flow_authorized':
      case 'authorization_created':
      case 'connection_ready': {
        // Each path knows one name for the acknowledgement; the other one is an unknown message there.
        if (frame.event !== 'connection_ready' && frame.event !== (session.dialect === 'v2' ? 'authorization_created' : 'flow_authorized')) break;
        const flow = typeof payload['ref'] === 'string' ? this.flowsByRef.get(payload['ref']) : undefined;
        const answer = frame.event === 'connection_ready' ? 'connection_ready' : 'authorization';
        if (flow === undefined || flow.gatewayId !== session.gateway.id || flow.answer !== answer) {
          this.reply(session, frame, 'error', { reason: 'invalid_ref' });
          return;
        }
        this.reply(session, frame, 'ok', {});
        flow.gatewayPayload = payload['gateway_payload'];
        this.settleFlow(flow, true);
        return;
      }
      case 'broadcast_ice_candidates':
      case 'broadcast_invalidated_ice_candidates': {
        const clientIds = payload['client_ids'];
        const candidates = payload['candidates'];
        if (!isStringArray(clientIds) || !isStringArray(candidates)) return;
        const kind = frame.event === 'broadcast_ice_candidates' ? 'candidates' : 'invalidated';
        for (const clientId of clientIds) this.queueCandidates(clientId, kind, session.gateway.id, candidates);
        return;
      }
      case 'set_snownet_capabilities':
        // No reply; a payload that is not an object falls to the catch-all, as in the portal.
        if (!head || !isObject(frame.payload)) break;
        session.icelessCapable = frame.payload['iceless'] === true;
        return;
      case 'no_relays':
        if (!head) break;
        // The portal answers with the relays it would pick now, none marked disconnected.
        this.push(session, 'relays_presence', { disconnected_ids: [], connected: this.renderRelays(session.gateway, [...this.relays.values()]) });
        return;
      default:
        break;
    }
    this.reply(session, frame, 'error', { reason: 'unknown_message' });
  }

  private initPayload(gateway: GatewayRecord): Record<string, unknown> {
    if (this.era === 'head') {
      // Key order as the portal's `init/3`.
      return {
        flow_logs: { api_url: this.baseUrl, upload_interval_secs: 60, upload_batch_size: 1000, ...this.options.flowLogs },
        authorizations: this.initAuthorizations(gateway),
        account_slug: this.options.accountSlug ?? 'dev',
        interface: { ipv4: gateway.ipv4, ipv6: gateway.ipv6 },
        relays: this.renderRelays(gateway, [...this.relays.values()]),
        config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
      };
    }
    const payload: Record<string, unknown> = {
      account_slug: this.options.accountSlug ?? 'dev',
      interface: { ipv4: gateway.ipv4, ipv6: gateway.ipv6 },
      relays: this.renderRelays(gateway, [...this.relays.values()]),
      config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
    };
    if (this.options.sendInitAuthorizations) {
      payload['authorizations'] = [...this.flows.values()]
        .filter((f) => f.gatewayId === gateway.id && f.authorized)
        .map((f) => ({ client_id: f.clientId, resource_id: f.resourceId }));
    }
    return payload;
  }

  /**
   * The portal's per-gateway authorization cache: one entry per (client, resource), the latest authorization pushed
   * to this gateway wins, expired ones are pruned (`Cache.Gateway`, `Views.PolicyAuthorization.render_many`).
   */
  private initAuthorizations(gateway: GatewayRecord): { client_id: string; resource_id: string; expires_at: number }[] {
    const nowS = this.now() / 1000;
    const byPair = new Map<string, { client_id: string; resource_id: string; expires_at: number }>();
    for (const flow of this.flows.values()) {
      if (flow.gatewayId !== gateway.id || flow.answer !== 'authorization') continue;
      const expiresAt = flow.grant.expires_at ?? NO_EXPIRY_S;
      if (expiresAt <= nowS) continue;
      byPair.set(`${flow.clientId}/${flow.resourceId}`, { client_id: flow.clientId, resource_id: flow.resourceId, expires_at: expiresAt });
    }
    return [...byPair.values()];
  }

  private checkIngestToken(token: string): IngestTokenCheck {
    return verifyIngestToken(this.ingestKey, token, Math.floor(this.now() / 1000));
  }

  /** One `turn` entry per relay address, IPv4 first, credentials salted with the gateway's public key (§4.4). */
  private renderRelays(gateway: GatewayRecord, relays: readonly RelayConfig[]): Record<string, unknown>[] {
    const lifetime = this.options.relayCredentialLifetimeSeconds ?? NINETY_DAYS_S;
    const expiresAt = Math.floor(this.now() / 1000) + lifetime;
    const scheme = this.options.relayCredentialScheme ?? 'coturn';
    return relays.flatMap((relay) => {
      const credentials = relayCredentials(scheme, relay.secret, gateway.publicKey, expiresAt);
      return [...relay.addresses].sort(addressFamilyOrder).map((addr) => ({
        id: relay.id,
        type: 'turn',
        addr,
        username: credentials.username,
        password: credentials.password,
        expires_at: credentials.expiresAt,
      }));
    });
  }

  // --- Flows ---

  /**
   * Pushes the authorization (`create_authorization` on v2, `authorize_flow` on v1; spec gateway-1.6 §2.2.4) and
   * resolves once the gateway acknowledges it (`authorization_created` / `flow_authorized`) or the wait ends.
   */
  private async authorizeFlow(
    client: ClientRecord,
    resource: Resource,
    expiresAt: number | null,
    request: FlowRequest,
    wait: boolean,
    viaPolicy: boolean,
  ): Promise<{ status: number; body: unknown }> {
    const picked = this.pickGateway(request.gatewayId, request.clientVersion, resource);
    if (!picked.ok) return picked.error === 'offline' ? { status: 503, body: { error: 'no gateway connected', reason: 'offline' } } : { status: 422, body: { error: 'no connected gateway serves this client version', reason: 'version_mismatch' } };
    const session = picked.session;
    const gateway = session.gateway;
    const ice = deriveIceCredentials(client.id, client.publicKey, gateway.id, gateway.publicKey);
    const psk = derivePresharedKey(client.id, client.publicKey, this.pskBase, gateway.id, gateway.publicKey, this.pskBase);
    const flowId = this.newId();
    const ref = `SFMyNTY.${Buffer.from(this.randomBytes(32)).toString('base64url')}`;
    const head = this.era === 'head';
    // The three conditions of the portal: the gateway said it can, the client asked, the account allows it.
    const useIceless = head && session.icelessCapable && request.iceless && (this.options.icelessEnabled ?? true);
    const tokens = head ? this.mintIngestTokens(flowId, client, gateway, resource, expiresAt, request.clientVersion) : undefined;
    const grant: FlowGrant = {
      flow_id: flowId,
      resource: renderResource(resource),
      gateway_id: gateway.id,
      gateway_public_key: gateway.publicKey,
      gateway_ipv4: gateway.ipv4,
      gateway_ipv6: gateway.ipv6,
      client: { id: client.id, ipv4: client.ipv4, ipv6: client.ipv6 },
      client_ice_credentials: ice.client,
      gateway_ice_credentials: ice.gateway,
      preshared_key: encodeKey(psk),
      expires_at: expiresAt,
      authorized: false,
      ...(head ? { use_iceless: useIceless, flow_logs_ingest_token: tokens!.initiator } : {}),
    };
    const flow: Flow = { id: flowId, ref, clientId: client.id, resourceId: resource.id, gatewayId: gateway.id, grant, viaPolicy, answer: 'authorization', gatewayPayload: undefined, authorized: false, waiters: [] };
    this.flows.set(flowId, flow);
    this.flowsByRef.set(ref, flow);
    session.subscribedResources.add(resource.id);
    const event = session.dialect === 'v2' ? 'create_authorization' : 'authorize_flow';
    if (head) {
      // Byte for byte the same payload on both paths (`Shared.handle_info({:create_authorization, …})`).
      this.push(session, event, {
        ref,
        resource: renderResource(resource),
        gateway_ice_credentials: ice.gateway,
        client: {
          id: client.id,
          public_key: client.publicKey,
          preshared_key: grant.preshared_key,
          ipv4: client.ipv4,
          ipv6: client.ipv6,
          version: request.clientVersion ?? null,
          device_serial: null,
          device_os_name: 'Linux',
          device_os_version: null,
          device_uuid: null,
          firebase_installation_id: null,
          identifier_for_vendor: null,
        },
        client_ice_credentials: ice.client,
        expires_at: expiresAt,
        subject: {
          actor_id: client.id,
          actor_name: `Client ${client.id.slice(0, 8)}`,
          actor_email: null,
          actor_type: 'account_user',
          auth_provider_id: null,
          ip: null,
          ip_region: null,
          ip_city: null,
          ip_lat: null,
          ip_lon: null,
          user_agent: null,
        },
        use_iceless: useIceless,
        flow_logs_ingest_token: tokens!.responder,
      });
    } else {
      this.push(session, event, {
        ref,
        flow_id: flowId,
        actor: { id: client.id },
        resource: renderResource(resource),
        gateway_ice_credentials: ice.gateway,
        client: { id: client.id, public_key: client.publicKey, preshared_key: grant.preshared_key, ipv4: client.ipv4, ipv6: client.ipv6 },
        client_ice_credentials: ice.client,
        expires_at: expiresAt,
      });
    }
    if (!wait) return { status: 202, body: grant };
    const authorized = await this.waitForFlow(flow);
    const answer = session.dialect === 'v2' ? 'authorization_created' : 'flow_authorized';
    if (!authorized) return { status: 504, body: { error: `the gateway did not answer ${answer}`, flow_id: flowId } };
    return { status: 200, body: { ...grant, authorized: true } };
  }

  /** The pair of ingest tokens of one authorization (`mint_ingest_tokens`): only `role` differs. */
  private mintIngestTokens(
    flowId: string,
    client: ClientRecord,
    gateway: GatewayRecord,
    resource: Resource,
    expiresAt: number | null,
    clientVersion: string | undefined,
  ): { initiator: string; responder: string } {
    const nowS = Math.floor(this.now() / 1000);
    const expiresAtS = expiresAt ?? NO_EXPIRY_S;
    const policy = [...this.policies.values()].find((p) => p.resourceId === resource.id && (p.clientIds === undefined || p.clientIds.includes(client.id)));
    const attribution = {
      initiator_device_id: client.id,
      responder_device_id: gateway.id,
      policy_authorization_id: flowId,
      // Flows pushed through the admin API have no policy; the token still names one, as the claim is required.
      policy_id: policy?.id ?? flowId,
      uploads_enabled: this.options.flowLogUploadsEnabled ?? true,
      resource_id: resource.id,
      resource_name: resource.name,
      resource_address: resource.type === 'internet' ? undefined : resource.address,
      initiator_actor_id: client.id,
      initiator_actor_name: `Client ${client.id.slice(0, 8)}`,
      authorized_at: isoMicros(nowS),
      authorization_expires_at: isoMicros(expiresAtS),
      initiator_client_version: clientVersion,
    };
    const accountId = this.options.accountId ?? DEFAULT_ACCOUNT_ID;
    return {
      initiator: mintIngestToken(this.ingestKey, accountId, { ...attribution, role: 'initiator' }, nowS, expiresAtS),
      responder: mintIngestToken(this.ingestKey, accountId, { ...attribution, role: 'responder' }, nowS, expiresAtS),
    };
  }

  /**
   * The deprecated pushes still sent to flows of clients older than 1.4 (§2.7, §2.8): `request_connection`
   * (answered by `connection_ready`, whose `gateway_payload` is returned) and `allow_access` (never answered).
   */
  private async legacyPush(
    event: 'request_connection' | 'allow_access',
    client: ClientRecord,
    resource: Resource,
    input: Record<string, unknown>,
    wait: boolean,
  ): Promise<{ status: number; body: unknown }> {
    const picked = this.pickGateway(optionalString(input['gateway_id']));
    if (!picked.ok) return { status: 503, body: { error: 'no gateway connected' } };
    const session = picked.session;
    const flowId = this.newId();
    const ref = `SFMyNTY.${Buffer.from(this.randomBytes(32)).toString('base64url')}`;
    const presharedKey = encodeKey(this.randomBytes(32));
    const expiresAt = typeof input['expires_at'] === 'number' ? input['expires_at'] : null;
    const domain = isObject(input['domain']) ? input['domain'] : undefined;
    session.subscribedResources.add(resource.id);
    if (event === 'allow_access') {
      this.push(session, 'allow_access', {
        ref,
        flow_id: flowId,
        client_id: client.id,
        resource: renderResource(resource),
        expires_at: expiresAt,
        ...(domain === undefined ? {} : { payload: domain }),
        client_ipv4: client.ipv4,
        client_ipv6: client.ipv6,
      });
      return { status: 202, body: { ref, flow_id: flowId } };
    }
    const iceParameters = isObject(input['ice_parameters'])
      ? input['ice_parameters']
      : { username: this.randomToken(16), password: this.randomToken(32) };
    const flow: Flow = {
      id: flowId,
      ref,
      clientId: client.id,
      resourceId: resource.id,
      gatewayId: session.gateway.id,
      grant: {
        flow_id: flowId,
        resource: renderResource(resource),
        gateway_id: session.gateway.id,
        gateway_public_key: session.gateway.publicKey,
        gateway_ipv4: session.gateway.ipv4,
        gateway_ipv6: session.gateway.ipv6,
        client: { id: client.id, ipv4: client.ipv4, ipv6: client.ipv6 },
        client_ice_credentials: iceParameters as unknown as IceCredentials,
        gateway_ice_credentials: { username: '', password: '' },
        preshared_key: presharedKey,
        expires_at: expiresAt,
        authorized: false,
      },
      viaPolicy: false,
      answer: 'connection_ready',
      gatewayPayload: undefined,
      authorized: false,
      waiters: [],
    };
    this.flows.set(flowId, flow);
    this.flowsByRef.set(ref, flow);
    this.push(session, 'request_connection', {
      ref,
      flow_id: flowId,
      actor: { id: client.id },
      resource: renderResource(resource),
      client: {
        id: client.id,
        peer: { public_key: client.publicKey, preshared_key: presharedKey, ipv4: client.ipv4, ipv6: client.ipv6, persistent_keepalive: 25 },
        payload: { ice_parameters: iceParameters, ...(domain === undefined ? {} : { domain }) },
      },
      expires_at: expiresAt,
    });
    if (!wait) return { status: 202, body: { ref, flow_id: flowId } };
    if (!(await this.waitForFlow(flow))) return { status: 504, body: { error: 'the gateway did not answer connection_ready', flow_id: flowId } };
    return { status: 200, body: { ref, flow_id: flowId, preshared_key: presharedKey, gateway_public_key: session.gateway.publicKey, gateway_payload: flow.gatewayPayload } };
  }

  private randomBytes(length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    this.random.fill(bytes);
    return bytes;
  }

  /** Letters only, like the ICE parameters old clients generate. */
  private randomToken(length: number): string {
    const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
    let out = '';
    for (let i = 0; i < length; i++) out += letters[this.random.u32() % letters.length];
    return out;
  }

  private waitForFlow(flow: Flow): Promise<boolean> {
    if (flow.authorized) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), this.options.flowTimeoutMs ?? 10_000);
      flow.waiters.push((authorized) => {
        clearTimeout(timer);
        resolve(authorized);
      });
    });
  }

  private settleFlow(flow: Flow, authorized: boolean): void {
    if (authorized) flow.authorized = true;
    for (const wake of flow.waiters.splice(0)) wake(authorized);
  }

  /** Pushes `reject_access` (§2.3) for every flow of (client, resource); returns how many flows were revoked. */
  private revoke(clientId: string | undefined, resourceId: string | undefined): number {
    return this.revokeWhere(
      (flow) => (clientId === undefined || flow.clientId === clientId) && (resourceId === undefined || flow.resourceId === resourceId),
    );
  }

  private revokeWhere(matches: (flow: Flow) => boolean): number {
    let revoked = 0;
    for (const flow of [...this.flows.values()]) {
      if (!matches(flow)) continue;
      this.flows.delete(flow.id);
      this.flowsByRef.delete(flow.ref);
      this.settleFlow(flow, false);
      revoked++;
      const session = this.sessions.get(flow.gatewayId);
      if (session?.joined) {
        // Today's portal sends the pair only; the legacy one also named the flow.
        const pair = { client_id: flow.clientId, resource_id: flow.resourceId };
        this.push(session, 'reject_access', this.era === 'head' ? pair : { flow_id: flow.id, ...pair });
      }
    }
    return revoked;
  }

  /**
   * The gateway for a flow: the named one, or among the joined gateways that may serve the client's version
   * (`gatewayServesClient`) those with the greatest version string (the portal compares them as strings), then the
   * first. `version_mismatch` when gateways are connected but none may serve the client.
   */
  private pickGateway(gatewayId: string | undefined, clientVersion?: string, resource?: Resource): { ok: true; session: GatewaySession } | { ok: false; error: 'offline' | 'version_mismatch' } {
    const joined = [...this.sessions.values()].filter((s) => s.joined && (gatewayId === undefined || s.gateway.id === gatewayId));
    if (joined.length === 0) return { ok: false, error: 'offline' };
    const eligible = joined.filter((s) => gatewayServesClient(s.gateway.version, clientVersion, resource?.type));
    if (eligible.length === 0) return { ok: false, error: 'version_mismatch' };
    const best = eligible.reduce((a, b) => ((b.gateway.version ?? '') > (a.gateway.version ?? '') ? b : a));
    return { ok: true, session: best };
  }

  private queueCandidates(clientId: string, kind: CandidateEvent['kind'], gatewayId: string, candidates: readonly string[]): void {
    let events = this.candidateEvents.get(clientId);
    if (events === undefined) {
      events = [];
      this.candidateEvents.set(clientId, events);
    }
    events.push({ seq: ++this.candidateSeq, kind, gateway_id: gatewayId, candidates: [...candidates] });
    const waiters = this.candidateWaiters.get(clientId) ?? [];
    this.candidateWaiters.delete(clientId);
    for (const wake of waiters) wake();
  }

  private async candidatesAfter(clientId: string, after: number, waitMs: number): Promise<CandidateEvent[]> {
    const pending = (): CandidateEvent[] => (this.candidateEvents.get(clientId) ?? []).filter((e) => e.seq > after);
    if (pending().length > 0 || waitMs <= 0) return pending();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      const waiters = this.candidateWaiters.get(clientId) ?? [];
      waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.candidateWaiters.set(clientId, waiters);
    });
    return pending();
  }

  /** Forwards a client's candidates to every gateway it has a flow with (or the one named). */
  private forwardClientCandidates(clientId: string, event: 'ice_candidates' | 'invalidate_ice_candidates', candidates: string[], gatewayId: string | undefined): number {
    const gatewayIds = new Set<string>();
    if (gatewayId !== undefined) gatewayIds.add(gatewayId);
    else for (const flow of this.flows.values()) if (flow.clientId === clientId) gatewayIds.add(flow.gatewayId);
    let sent = 0;
    for (const id of gatewayIds) {
      const session = this.sessions.get(id);
      if (!session?.joined) continue;
      this.push(session, event, { client_id: clientId, candidates });
      sent++;
    }
    return sent;
  }

  // --- Frames ---

  private push(session: GatewaySession, event: string, payload: unknown): void {
    this.send(session, { topic: GATEWAY_TOPIC, event, payload, ref: null });
  }

  private reply(session: GatewaySession, request: Frame, status: 'ok' | 'error', response: Record<string, unknown>): void {
    if (request.ref === null) return;
    this.send(session, { topic: request.topic, event: 'phx_reply', payload: { status, response }, ref: request.ref });
  }

  private send(session: GatewaySession, frame: Frame): void {
    session.ws.send(JSON.stringify({ topic: frame.topic, event: frame.event, payload: frame.payload, ref: frame.ref }));
  }

  // --- HTTP APIs ---

  private async handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://portal');
    for (const route of this.options.routes ?? []) {
      try {
        if (await route(req, res, url, this.routeContext)) return;
      } catch (error) {
        this.log(`route for ${req.method} ${url.pathname} failed: ${String(error)}`);
        if (!res.headersSent) sendJson(res, 500, { error: String(error) });
        return;
      }
    }
    let body: unknown;
    try {
      body = await readJson(req);
    } catch {
      return sendJson(res, 400, { error: 'body must be JSON' });
    }
    let result: { status: number; body: unknown };
    try {
      result = await this.route(req.method ?? 'GET', url, body);
    } catch (error) {
      this.log(`admin request ${req.method} ${url.pathname} failed: ${String(error)}`);
      result = { status: 500, body: { error: String(error) } };
    }
    if (!res.headersSent) sendJson(res, result.status, result.body);
  }

  private async route(method: string, url: URL, body: unknown): Promise<{ status: number; body: unknown }> {
    const path = url.pathname.replace(/\/+$/, '');
    const parts = path.split('/').slice(1);
    const input = isObject(body) ? body : {};
    const key = `${method} /${parts.map((p, i) => (i > 0 && isParam(parts, i) ? ':id' : p)).join('/')}`;
    const id = parts.find((_, i) => i > 0 && isParam(parts, i));

    switch (key) {
      case 'GET /admin/state':
        return ok(this.snapshot());
      case 'GET /admin/received': {
        const event = url.searchParams.get('event') ?? undefined;
        return ok(this.receivedFrames.filter((r) => event === undefined || r.frame.event === event));
      }
      case 'POST /admin/resources':
      case 'PUT /admin/resources/:id':
        return this.putResource(id, input);
      case 'DELETE /admin/resources/:id': {
        if (!this.resources.delete(id!)) return notFound('resource');
        return ok({ revoked: this.revoke(undefined, id) });
      }
      case 'POST /admin/clients': {
        const clientId = input['id'] ?? this.newId();
        if (!isUuid(clientId)) return bad('id must be a UUID');
        const publicKey = input['public_key'] ?? randomKey(this.random);
        if (typeof publicKey !== 'string' || !isValidKey(publicKey)) return bad('public_key must be a base64 32-byte key');
        return ok(this.upsertClient(clientId, publicKey, optionalString(input['ipv4']), optionalString(input['ipv6'])));
      }
      case 'POST /admin/policies': {
        const resourceId = input['resource_id'];
        const clientIds = input['client_ids'];
        if (typeof resourceId !== 'string' || !this.resources.has(resourceId)) return bad('resource_id must name a resource');
        if (clientIds !== undefined && !isStringArray(clientIds)) return bad('client_ids must be a list of ids');
        const policy: Policy = { id: this.newId(), resourceId, clientIds };
        this.policies.set(policy.id, policy);
        return ok(policy);
      }
      case 'DELETE /admin/policies/:id': {
        const policy = this.policies.get(id!);
        if (policy === undefined) return notFound('policy');
        this.policies.delete(policy.id);
        const revoked = this.revokeWhere(
          (flow) => flow.viaPolicy && flow.resourceId === policy.resourceId && !this.allowedByPolicy(flow.clientId, flow.resourceId),
        );
        return ok({ deleted: policy.id, revoked });
      }
      case 'POST /admin/authorizations':
        return this.requestFlow(input['client_id'], input, false, url);
      case 'DELETE /admin/authorizations':
      case 'POST /admin/legacy/request_connection':
      case 'POST /admin/legacy/allow_access': {
        const client = typeof input['client_id'] === 'string' ? this.clients.get(input['client_id']) : undefined;
        const resource = typeof input['resource_id'] === 'string' ? this.resources.get(input['resource_id']) : undefined;
        if (client === undefined) return bad('client_id must name a client (POST /admin/clients first)');
        if (resource === undefined) return bad('resource_id must name a resource');
        const event = parts[2] === 'request_connection' ? 'request_connection' : 'allow_access';
        return this.legacyPush(event, client, resource, input, url.searchParams.get('wait') !== '0');
      }
      case 'POST /admin/revoke': {
        const clientId = optionalString(input['client_id'] ?? url.searchParams.get('client_id') ?? undefined);
        const resourceId = optionalString(input['resource_id'] ?? url.searchParams.get('resource_id') ?? undefined);
        return ok({ revoked: this.revoke(clientId, resourceId) });
      }
      case 'POST /admin/relays': {
        const relay = checkRelay(input, () => this.newId());
        if (!relay.ok) return bad(relay.error);
        this.relays.set(relay.value.id, relay.value);
        this.pushRelaysPresence([]);
        return ok(relay.value);
      }
      case 'DELETE /admin/relays/:id': {
        if (!this.relays.delete(id!)) return notFound('relay');
        this.pushRelaysPresence([id!]);
        return ok({ deleted: id });
      }
      case 'POST /admin/relays_presence': {
        const disconnected = input['disconnected_ids'] ?? [];
        if (!isStringArray(disconnected)) return bad('disconnected_ids must be a list of ids');
        return ok({ sent: this.pushRelaysPresence(disconnected) });
      }
      case 'POST /admin/tokens': {
        const token = optionalString(input['token']);
        if (token === undefined) return bad('token is required');
        this.tokens.add(token);
        return ok({ token });
      }
      case 'POST /admin/tokens/revoke': {
        const token = optionalString(input['token']);
        if (token === undefined || !this.tokens.delete(token)) return notFound('token');
        const closed = [...this.sessions.values()].filter((s) => s.token === token);
        for (const session of closed) session.ws.close();
        return ok({ closed: closed.length });
      }
      case 'POST /admin/gateways/disconnect':
      case 'POST /admin/gateways/drop':
      case 'POST /admin/gateways/push':
        return this.gatewayCommand(parts[2]!, input);
      case 'POST /clients/:id/flows':
        return this.requestFlow(id, input, true, url);
      case 'GET /clients/:id/candidates': {
        const after = Number(url.searchParams.get('after') ?? 0);
        const waitMs = Math.min(Number(url.searchParams.get('wait_ms') ?? 0), 60_000);
        const events = await this.candidatesAfter(id!, Number.isFinite(after) ? after : 0, Number.isFinite(waitMs) ? waitMs : 0);
        return ok({ events, next: events.at(-1)?.seq ?? after });
      }
      case 'POST /clients/:id/candidates':
      case 'POST /clients/:id/invalidate_candidates': {
        const candidates = input['candidates'];
        if (!isStringArray(candidates)) return bad('candidates must be a list of strings');
        const event = parts[2] === 'candidates' ? 'ice_candidates' : 'invalidate_ice_candidates';
        return ok({ sent: this.forwardClientCandidates(id!, event, candidates, optionalString(input['gateway_id'])) });
      }
      default:
        return { status: 404, body: { error: `no route ${method} ${path}` } };
    }
  }

  private putResource(id: string | undefined, input: Record<string, unknown>): { status: number; body: unknown } {
    const checked = checkResource(id === undefined ? input : { ...input, id }, () => this.newId());
    if (!checked.ok) return bad(checked.error);
    const resource = checked.value;
    const existed = this.resources.has(resource.id);
    this.resources.set(resource.id, resource);
    let pushed = 0;
    if (existed) {
      for (const session of this.sessions.values()) {
        if (!session.joined || !session.subscribedResources.has(resource.id)) continue;
        this.push(session, 'resource_updated', renderResource(resource));
        pushed++;
      }
    }
    return ok({ resource: renderResource(resource), resource_updated_sent: pushed });
  }

  /**
   * A flow for (client, resource). From the client API it needs a policy; from the admin API it does not.
   * Body: `{resource_id, public_key?, ipv4?, ipv6?, expires_at? (Unix s or null), gateway_id?}`; the client record
   * is created or its key updated. Waits for `flow_authorized` unless `?wait=0`.
   */
  private async requestFlow(clientIdValue: unknown, input: Record<string, unknown>, needPolicy: boolean, url: URL): Promise<{ status: number; body: unknown }> {
    if (!isUuid(clientIdValue)) return bad('client id must be a UUID');
    const resource = typeof input['resource_id'] === 'string' ? this.resources.get(input['resource_id']) : undefined;
    if (resource === undefined) return bad('resource_id must name a resource');
    const publicKey = input['public_key'];
    if (publicKey !== undefined && (typeof publicKey !== 'string' || !isValidKey(publicKey))) return bad('public_key must be a base64 32-byte key');
    const existing = this.clients.get(clientIdValue);
    if (existing === undefined && publicKey === undefined) return bad('unknown client: give public_key to create it');
    const client = this.upsertClient(clientIdValue, (publicKey as string | undefined) ?? existing!.publicKey, optionalString(input['ipv4']), optionalString(input['ipv6']));
    if (needPolicy && !this.allowedByPolicy(client.id, resource.id)) return { status: 403, body: { error: 'no policy allows this client to access this resource' } };
    const expiresAt = input['expires_at'];
    if (expiresAt !== undefined && expiresAt !== null && !(typeof expiresAt === 'number' && Number.isInteger(expiresAt))) {
      return bad('expires_at must be Unix seconds or null');
    }
    const clientVersion = input['client_version'];
    if (clientVersion !== undefined && typeof clientVersion !== 'string') return bad('client_version must be a string');
    const wait = url.searchParams.get('wait') !== '0';
    // Today's portal gives every authorization an expiry; the legacy one let a flow without expiry through.
    const defaultExpiry = this.era === 'head' ? Math.floor(this.now() / 1000) + (this.options.authorizationLifetimeSeconds ?? SEVEN_DAYS_S) : null;
    const request: FlowRequest = { gatewayId: optionalString(input['gateway_id']), clientVersion, iceless: input['iceless'] === true };
    return this.authorizeFlow(client, resource, expiresAt === undefined ? defaultExpiry : (expiresAt as number | null), request, wait, needPolicy);
  }

  private allowedByPolicy(clientId: string, resourceId: string): boolean {
    for (const policy of this.policies.values()) {
      if (policy.resourceId !== resourceId) continue;
      if (policy.clientIds === undefined || policy.clientIds.includes(clientId)) return true;
    }
    return false;
  }

  private gatewayCommand(command: string, input: Record<string, unknown>): { status: number; body: unknown } {
    const gatewayId = optionalString(input['gateway_id']);
    const targets = [...this.sessions.values()].filter((s) => gatewayId === undefined || s.gateway.id === gatewayId);
    if (targets.length === 0) return { status: 404, body: { error: 'no such gateway connected' } };
    for (const session of targets) {
      switch (command) {
        case 'disconnect':
          this.push(session, 'disconnect', { reason: optionalString(input['reason']) ?? 'token_expired' });
          session.ws.close();
          break;
        case 'drop':
          session.ws.terminate();
          break;
        default:
          this.send(session, {
            topic: optionalString(input['topic']) ?? GATEWAY_TOPIC,
            event: optionalString(input['event']) ?? 'unknown',
            payload: input['payload'] ?? {},
            ref: null,
          });
      }
    }
    return ok({ gateways: targets.map((s) => s.gateway.id) });
  }

  private pushRelaysPresence(disconnectedIds: readonly string[]): number {
    let sent = 0;
    for (const session of this.sessions.values()) {
      if (!session.joined) continue;
      this.push(session, 'relays_presence', {
        disconnected_ids: [...disconnectedIds],
        connected: this.renderRelays(session.gateway, [...this.relays.values()]),
      });
      sent++;
    }
    return sent;
  }

  private upsertClient(id: string, publicKey: string, ipv4: string | undefined, ipv6: string | undefined): ClientRecord {
    const existing = this.clients.get(id);
    if (existing !== undefined) {
      existing.publicKey = publicKey;
      return existing;
    }
    const allocated = allocateTunnelAddresses(this.random, this.usedAddresses);
    const client: ClientRecord = { id, publicKey, ipv4: ipv4 ?? allocated.ipv4, ipv6: ipv6 ?? allocated.ipv6 };
    this.usedAddresses.add(client.ipv4).add(client.ipv6);
    this.clients.set(id, client);
    return client;
  }

  private snapshot(): Record<string, unknown> {
    return {
      gateways: [...this.gatewaysByExternalId.values()].map((g) => ({
        ...g,
        connected: this.sessions.has(g.id),
        joined: this.sessions.get(g.id)?.joined ?? false,
        /** The path of the current socket: `v2` or `v1` (null when none). */
        dialect: this.sessions.get(g.id)?.dialect ?? null,
      })),
      resources: [...this.resources.values()].map(renderResource),
      clients: [...this.clients.values()],
      policies: [...this.policies.values()],
      relays: [...this.relays.values()].map((r) => ({ id: r.id, addresses: r.addresses })),
      flows: [...this.flows.values()].map((f) => ({
        flow_id: f.id,
        client_id: f.clientId,
        resource_id: f.resourceId,
        gateway_id: f.gatewayId,
        authorized: f.authorized,
      })),
    };
  }

  private saved(): SavedState {
    return {
      psk_base: Buffer.from(this.pskBase).toString('base64'),
      ingest_key: Buffer.from(this.ingestKey).toString('base64'),
      gateways: [...this.gatewaysByExternalId.values()],
      clients: [...this.clients.values()],
      resources: [...this.resources.values()],
      policies: [...this.policies.values()],
      flows: [...this.flows.values()].map((f) => ({ id: f.id, ref: f.ref, clientId: f.clientId, resourceId: f.resourceId, gatewayId: f.gatewayId, grant: f.grant, viaPolicy: f.viaPolicy, answer: f.answer, authorized: f.authorized })),
    };
  }

  private restore(state: SavedState): void {
    this.pskBase.set(Buffer.from(state.psk_base, 'base64'));
    this.ingestKey.set(Buffer.from(state.ingest_key, 'base64'));
    for (const gateway of state.gateways) {
      this.gatewaysByExternalId.set(gateway.externalId, { ...gateway });
      this.usedAddresses.add(gateway.ipv4).add(gateway.ipv6);
    }
    for (const client of state.clients) {
      this.clients.set(client.id, { ...client });
      this.usedAddresses.add(client.ipv4).add(client.ipv6);
    }
    for (const resource of state.resources) this.resources.set(resource.id, resource);
    for (const policy of state.policies) this.policies.set(policy.id, policy);
    for (const saved of state.flows) {
      const flow: Flow = { ...saved, gatewayPayload: undefined, waiters: [] };
      this.flows.set(flow.id, flow);
      this.flowsByRef.set(flow.ref, flow);
    }
  }

  private newId(): string {
    const bytes = new Uint8Array(16);
    this.random.fill(bytes);
    bytes[6] = (bytes[6]! & 0x0f) | 0x40;
    bytes[8] = (bytes[8]! & 0x3f) | 0x80;
    const hex = Buffer.from(bytes).toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
}

function parseFrame(data: RawData): Frame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(value) || typeof value['topic'] !== 'string' || typeof value['event'] !== 'string') return undefined;
  const ref = value['ref'];
  return {
    topic: value['topic'],
    event: value['event'],
    payload: value['payload'],
    ref: typeof ref === 'number' || typeof ref === 'string' ? ref : null,
  };
}

function rejectUpgrade(socket: Duplex, status: number, reason: string, body: string): void {
  const bytes = Buffer.from(body, 'utf8');
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${bytes.length}\r\nConnection: close\r\n\r\n${body}`,
  );
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (chunks.length === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  return text.trim() === '' ? undefined : JSON.parse(text);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Path segments after a collection name are ids: /admin/resources/<id>, /clients/<id>/flows. */
function isParam(parts: readonly string[], index: number): boolean {
  const collection = parts[index - 1];
  if (parts[0] === 'clients') return index === 1;
  return (collection === 'resources' || collection === 'policies' || collection === 'relays') && parts[0] === 'admin';
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function randomKey(random: RandomSource): string {
  const bytes = new Uint8Array(32);
  random.fill(bytes);
  return encodeKey(bytes);
}

function ok(body: unknown): { status: number; body: unknown } {
  return { status: 200, body };
}

function bad(error: string): { status: number; body: unknown } {
  return { status: 400, body: { error } };
}

function notFound(what: string): { status: number; body: unknown } {
  return { status: 404, body: { error: `no such ${what}` } };
}

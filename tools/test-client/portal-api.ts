/**
 * The dev portal's JSON APIs as the test client uses them (tools/dev-portal/README.md):
 * register (`POST /admin/clients`), request a flow, and exchange ICE candidates.
 */

export interface IceCredentialsText {
  readonly username: string;
  readonly password: string;
}

export interface ClientRegistration {
  readonly id: string;
  readonly publicKey: string;
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface FlowGrant {
  readonly flow_id: string;
  readonly gateway_id: string;
  readonly gateway_public_key: string;
  readonly gateway_ipv4: string;
  readonly gateway_ipv6: string;
  readonly client: { readonly id: string; readonly ipv4: string; readonly ipv6: string };
  readonly client_ice_credentials: IceCredentialsText;
  readonly gateway_ice_credentials: IceCredentialsText;
  readonly preshared_key: string;
  readonly expires_at: number | null;
  readonly resource: { readonly id: string; readonly type: string; readonly address?: string; readonly name?: string };
  readonly authorized: boolean;
  /** The portal chose an ICE-less connection (both ends advertised it). Absent from older dev portals. */
  readonly use_iceless?: boolean;
  /** This client's flow-log ingest token (role initiator); absent from a legacy-era dev portal. */
  readonly flow_logs_ingest_token?: string;
}

export interface CandidateEvent {
  readonly seq: number;
  readonly kind: 'candidates' | 'invalidated';
  readonly gateway_id: string;
  readonly candidates: readonly string[];
}

export class PortalApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class PortalApi {
  constructor(
    private readonly baseUrl: string,
    private readonly clientId: string,
  ) {}

  async register(publicKey: string): Promise<ClientRegistration> {
    return this.request<ClientRegistration>('POST', '/admin/clients', { id: this.clientId, public_key: publicKey });
  }

  /**
   * `iceless`: this client can do ICE-less connections (a 1.6 client's capability). `clientVersion`: the version the
   * portal's gate sees (undefined: none, served by every gateway).
   */
  async requestFlow(resourceId: string, publicKey: string, iceless = false, clientVersion?: string): Promise<FlowGrant> {
    return this.request<FlowGrant>('POST', `/clients/${this.clientId}/flows`, {
      resource_id: resourceId,
      public_key: publicKey,
      ...(iceless ? { iceless: true } : {}),
      ...(clientVersion === undefined ? {} : { client_version: clientVersion }),
    });
  }

  async candidates(after: number, waitMs: number, signal?: AbortSignal): Promise<{ events: CandidateEvent[]; next: number }> {
    return this.request('GET', `/clients/${this.clientId}/candidates?after=${after}&wait_ms=${waitMs}`, undefined, signal);
  }

  async sendCandidates(gatewayId: string, candidates: readonly string[]): Promise<void> {
    await this.request('POST', `/clients/${this.clientId}/candidates`, { candidates, gateway_id: gatewayId });
  }

  async invalidateCandidates(gatewayId: string, candidates: readonly string[]): Promise<void> {
    await this.request('POST', `/clients/${this.clientId}/invalidate_candidates`, { candidates, gateway_id: gatewayId });
  }

  private async request<T>(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = text;
    }
    if (!response.ok) {
      const reason = typeof parsed === 'object' && parsed !== null && 'error' in parsed ? String((parsed as { error: unknown }).error) : text;
      throw new PortalApiError(response.status, `${method} ${path}: ${response.status} ${reason}`);
    }
    return parsed as T;
  }
}

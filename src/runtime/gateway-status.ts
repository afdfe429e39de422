/**
 * What an orchestrator and an operator ask of a running gateway: is it ready to serve clients
 * (joined to the portal and the TUN device configured by an `init`), and how is the portal
 * connection doing. The runtime sets it; the health server and the metrics read it.
 */
import type { ChannelState } from '../portal/phoenix-channel.ts';

export const PORTAL_STATES: readonly ChannelState[] = ['disconnected', 'connecting', 'joining', 'joined', 'reconnecting', 'closing', 'failed'];

export class GatewayStatus {
  portalState: ChannelState = 'disconnected';
  /** Transient failures of the portal connection, each followed by a reconnect. */
  portalHiccups = 0;
  tunConfigured = false;

  /** `/readyz`: clients can be served. */
  get ready(): boolean {
    return this.portalState === 'joined' && this.tunConfigured;
  }

  portalStateChanged(state: ChannelState): void {
    this.portalState = state;
  }

  portalHiccup(): void {
    this.portalHiccups++;
  }
}

import type { GatewayOptions } from '../cli/options.ts';
import type { StartedGateway } from '../cli/main.ts';

/**
 * Starts the gateway's IO shell. The data plane (connectivity node, policy core) and the
 * portal event loop are wired in here as they land; until then starting fails loudly.
 */
export async function startGateway(_options: GatewayOptions, _firezoneId: string): Promise<StartedGateway> {
  throw new Error('the gateway runtime is not wired up in this build yet');
}

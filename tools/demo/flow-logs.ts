// The demo's flow-log step (issue 21): the flows the gateway reported to the development portal, as the
// portal stored them (GET /admin/flow_logs), one line each. Informational: the demo does not fail on it.
import type { GatewayStack } from '../../test/e2e/stack.ts';
import { waitFor } from '../../test/e2e/stack.ts';

type Row = Record<string, unknown>;

/** Waits up to `timeoutMs` for completed reports to arrive, then prints every stored flow. */
export async function printFlowLogs(stack: GatewayStack, timeoutMs = 8_000): Promise<number> {
  const rows = async (): Promise<Row[]> => ((await stack.admin('GET', '/admin/flow_logs'))['flow_logs'] as Row[] | undefined) ?? [];
  await waitFor(async () => (await rows()).some((r) => r['flow_end'] !== undefined), timeoutMs, 'flow reports').catch(() => undefined);
  const names = new Map(Object.entries(stack.resourceIds).map(([name, id]) => [id, name]));
  const flows = await rows();
  if (flows.length === 0) {
    console.log('  (no flow reports reached the portal)');
    return 0;
  }
  for (const r of flows) {
    const to = `${String(r['inner_dst_ip'])}:${String(r['inner_dst_port'])}${r['domain'] === undefined ? '' : ` (${String(r['domain'])})`}`;
    const counts = r['flow_end'] === undefined ? 'open' : `${String(r['tx_packets'])} pkts/${String(r['tx_bytes'])} B out, ${String(r['rx_packets'])} pkts/${String(r['rx_bytes'])} B back`;
    const resource = names.get(String(r['resource_id'])) ?? String(r['resource_name'] ?? r['resource_id']);
    console.log(`  ${String(r['protocol']).toUpperCase()} ${String(r['inner_src_ip'])}:${String(r['inner_src_port'])} -> ${to}  [${resource}]  ${counts}`);
  }
  return flows.length;
}

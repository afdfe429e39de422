/**
 * The control API: one JSON command per line on stdin, one JSON line per answer or event on
 * stdout. A harness spawns the client (`ip netns exec <ns> node ... main.ts`) and drives it
 * through its pipes, so nothing needs to reach into the namespace.
 *
 *   {"id":1,"cmd":"connect","resource_id":"<uuid>","domain"?:"<name>","routes"?:["<cidr>"],"timeout_ms"?:15000}
 *   {"id":2,"cmd":"state"}
 *   {"id":3,"cmd":"proxy_ips","resource_id":"<uuid>","domain"?:"<name>"}
 *   {"id":4,"cmd":"reassign","resource_id":"<uuid>","domain":"<name>"}
 *   {"id":5,"cmd":"disconnect","resource_id"?:"<uuid>"}
 *   {"id":6,"cmd":"drop_connections"}
 *   {"id":7,"cmd":"quit"}
 * Answers: {"id":N,"ok":true,...result} or {"id":N,"ok":false,"error":"..."}.
 * Events: {"event":"ready",...}, {"event":"connection_established",...}, {"event":"connection_failed",...},
 *         {"event":"domain_status",...}.
 */
import type { TestClient } from './client.ts';

export type ControlCommand =
  | { readonly cmd: 'connect'; readonly resource_id: string; readonly domain?: string; readonly routes?: string[]; readonly timeout_ms?: number }
  | { readonly cmd: 'state' }
  | { readonly cmd: 'proxy_ips'; readonly resource_id: string; readonly domain?: string }
  | { readonly cmd: 'reassign'; readonly resource_id: string; readonly domain: string }
  | { readonly cmd: 'disconnect'; readonly resource_id?: string }
  | { readonly cmd: 'drop_connections' }
  | { readonly cmd: 'quit' };

export type ControlReply = Record<string, unknown> & { readonly id: unknown; readonly ok: boolean };

/** Parses one command line; an error string when it is not a command. */
export function parseCommand(line: string): { id: unknown; command: ControlCommand } | { id: unknown; error: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { id: null, error: 'not JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { id: null, error: 'not a JSON object' };
  const input = value as Record<string, unknown>;
  const id = input['id'] ?? null;
  const text = (name: string): string | undefined => (typeof input[name] === 'string' && input[name] !== '' ? (input[name] as string) : undefined);
  const resourceId = text('resource_id');
  switch (input['cmd']) {
    case 'connect': {
      if (resourceId === undefined) return { id, error: 'connect needs resource_id' };
      const routes = input['routes'];
      if (routes !== undefined && !(Array.isArray(routes) && routes.every((r) => typeof r === 'string'))) return { id, error: 'routes must be a list of strings' };
      const timeout = input['timeout_ms'];
      if (timeout !== undefined && !(typeof timeout === 'number' && timeout > 0)) return { id, error: 'timeout_ms must be a positive number' };
      const domain = text('domain');
      return {
        id,
        command: {
          cmd: 'connect',
          resource_id: resourceId,
          ...(domain === undefined ? {} : { domain }),
          ...(routes === undefined ? {} : { routes: routes as string[] }),
          ...(timeout === undefined ? {} : { timeout_ms: timeout as number }),
        },
      };
    }
    case 'state':
      return { id, command: { cmd: 'state' } };
    case 'proxy_ips': {
      if (resourceId === undefined) return { id, error: 'proxy_ips needs resource_id' };
      const domain = text('domain');
      return { id, command: { cmd: 'proxy_ips', resource_id: resourceId, ...(domain === undefined ? {} : { domain }) } };
    }
    case 'reassign': {
      const domain = text('domain');
      if (resourceId === undefined || domain === undefined) return { id, error: 'reassign needs resource_id and domain' };
      return { id, command: { cmd: 'reassign', resource_id: resourceId, domain } };
    }
    case 'disconnect':
      return { id, command: { cmd: 'disconnect', ...(resourceId === undefined ? {} : { resource_id: resourceId }) } };
    case 'drop_connections':
      return { id, command: { cmd: 'drop_connections' } };
    case 'quit':
      return { id, command: { cmd: 'quit' } };
    default:
      return { id, error: `unknown cmd ${JSON.stringify(input['cmd'])}` };
  }
}

/** Runs one command against the client. `quit` is the caller's to act on after the reply. */
export async function runCommand(client: TestClient, id: unknown, command: ControlCommand): Promise<ControlReply> {
  try {
    switch (command.cmd) {
      case 'connect': {
        const result = await client.connect({
          resourceId: command.resource_id,
          ...(command.domain === undefined ? {} : { domain: command.domain }),
          ...(command.routes === undefined ? {} : { routes: command.routes }),
          ...(command.timeout_ms === undefined ? {} : { timeoutMs: command.timeout_ms }),
        });
        return { id, ok: true, ...result };
      }
      case 'state':
        return { id, ok: true, ...client.state() };
      case 'proxy_ips': {
        const found = client.proxyIpsOf(command.resource_id, command.domain);
        return found === undefined ? { id, ok: false, error: 'no proxy IPs assigned for that resource' } : { id, ok: true, ...found };
      }
      case 'reassign': {
        const status = await client.reassign(command.resource_id, command.domain);
        return status === undefined ? { id, ok: false, error: 'domain not assigned' } : { id, ok: true, status };
      }
      case 'disconnect':
        return { id, ok: true, disconnected: await client.disconnect(command.resource_id) };
      case 'drop_connections':
        return { id, ok: true, dropped: client.dropConnections() };
      case 'quit':
        return { id, ok: true };
    }
  } catch (error) {
    return { id, ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

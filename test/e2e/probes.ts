/** Probes run inside the client namespace: HTTP, UDP echo and TCP connect, each with a verdict. */
import type { Lab } from '../../tools/lab/lab.ts';
import { REPO_ROOT } from './stack.ts';

export interface Probe {
  ok: boolean;
  status?: number;
  body?: string;
  reply?: string;
  error?: string;
}

/** `ns` defaults to the lab's client namespace. */
export function probe(lab: Lab, args: string[], timeoutMs = 3_000, ns: string = lab.ns.client): Probe {
  const out = lab.exec(ns, ['node', '--import', 'tsx', `${REPO_ROOT}tools/test-client/probe.ts`, ...args, '--timeout-ms', String(timeoutMs)], { timeoutMs: timeoutMs * 4 + 10_000 });
  return JSON.parse(out.trim().split('\n').at(-1)!) as Probe;
}

export function http(lab: Lab, url: string, timeoutMs = 3_000, ns: string = lab.ns.client): Probe {
  return probe(lab, ['http', url], timeoutMs, ns);
}

export function udpEcho(lab: Lab, address: string, text: string, ns: string = lab.ns.client): Probe {
  return probe(lab, ['udp', address, '7', text, '--tries', '3'], 1_500, ns);
}

export type ConnectVerdict = 'connected' | 'refused' | 'unreachable' | 'timeout' | 'error';

/**
 * A TCP connect from the client namespace: connected, refused (a RST), unreachable (an ICMP error
 * such as administratively prohibited, which Linux reports as EHOSTUNREACH) or timeout.
 */
export function tcpConnect(lab: Lab, address: string, port: number): ConnectVerdict {
  const result = probe(lab, ['tcp', address, String(port)], 3_000);
  if (result.ok) return 'connected';
  switch (result.error) {
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'unreachable';
    case 'ECONNREFUSED':
      return 'refused';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return 'error';
  }
}

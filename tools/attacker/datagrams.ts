/**
 * Datagram-level attacks on the gateway's UDP port, sent from the attacker's own data-plane socket
 * (the address the gateway knows it by, so they reach its connection and tunnel rather than being
 * dropped as strangers): handshake initiations with a valid MAC1 (the gateway must answer with
 * cookies once under load), and fuzzed datagrams of every format the port accepts. Also fuzzed DNS
 * queries for the forwarder, which travel inside the tunnel.
 */
import { parseIp } from '../../src/ip/addr.ts';
import { PROTOCOL_UDP } from '../../src/ip/constants.ts';
import { buildQuery } from '../../src/runtime/dns-forwarder.ts';
import { encodeStunMessage } from '../../src/stun/message.ts';
import type { RandomSource } from '../../src/util/random.ts';
import { INITIATION_OFFSET_MAC1, INITIATION_SIZE, MESSAGE_INITIATION } from '../../src/wireguard/constants.ts';
import { mac } from '../../src/wireguard/crypto.ts';
import { publicIdentity } from '../../src/wireguard/keys.ts';
import { mutate, randomBytesOf } from './mutate.ts';
import { ip, udp } from './raw.ts';

/** A handshake initiation to `gatewayPublicKey` with garbage inside but a valid MAC1 (so it costs the gateway more than a drop). */
export function handshakeInitiation(rng: RandomSource, mac1Key: Uint8Array): Uint8Array {
  const message = new Uint8Array(INITIATION_SIZE);
  rng.fill(message.subarray(4, INITIATION_OFFSET_MAC1));
  message[0] = MESSAGE_INITIATION;
  message.set(mac(mac1Key, message.subarray(0, INITIATION_OFFSET_MAC1)), INITIATION_OFFSET_MAC1);
  return message;
}

export function mac1KeyOf(gatewayPublicKey: Uint8Array): Uint8Array {
  return publicIdentity(gatewayPublicKey).mac1Key;
}

/**
 * Fuzzed datagrams: random bytes, every WireGuard message type at its exact size, STUN binding
 * requests, ChannelData, and mutations of `seeds` (real datagrams of the session: transport
 * packets whose receiver index is valid).
 */
export function fuzzDatagram(rng: RandomSource, mac1Key: Uint8Array, seeds: readonly Uint8Array[]): Uint8Array {
  switch (rng.u32() % 8) {
    case 0:
      return randomBytesOf(rng, rng.u32() % 1400);
    case 1: {
      const sizes = [148, 92, 64, 32, 48, 200];
      const bytes = randomBytesOf(rng, sizes[rng.u32() % sizes.length]!);
      bytes[0] = 1 + (rng.u32() % 4);
      bytes[1] = bytes[2] = bytes[3] = 0;
      return bytes;
    }
    case 2:
      return mutate(rng, handshakeInitiation(rng, mac1Key));
    case 3:
      return mutate(rng, stunBinding(rng));
    case 4: {
      const bytes = randomBytesOf(rng, 4 + (rng.u32() % 200));
      bytes[0] = 0x40 + (rng.u32() % 0x10);
      return bytes;
    }
    default: {
      const seed = seeds.length === 0 ? stunBinding(rng) : seeds[rng.u32() % seeds.length]!;
      return mutate(rng, seed);
    }
  }
}

function stunBinding(rng: RandomSource): Uint8Array {
  return encodeStunMessage(
    {
      method: 0x001,
      class: 'request',
      transactionId: randomBytesOf(rng, 12),
      attributes: [
        { kind: 'username', value: 'abcd:efgh' },
        { kind: 'priority', priority: rng.u32() },
        { kind: 'iceControlling', tieBreaker: 42n },
        { kind: 'useCandidate' },
      ],
    },
    { integrityKey: randomBytesOf(rng, 16), fingerprint: true },
  );
}

/** A fuzzed DNS query inside an IP/UDP packet from `source` to the gateway's forwarder. */
export function fuzzDnsQueryPacket(rng: RandomSource, source: string, destination: string, port: number): Uint8Array {
  const from = parseIp(source)!;
  const to = parseIp(destination)!;
  const names = ['app.lab.test', 'firezone.dev', 'a.b.c.d.e.f.g.lab.test', 'x'.repeat(63) + '.lab.test', 'lab.test'];
  const types = [1, 28, 5, 15, 16, 33, 255, 252, 0];
  let query: Uint8Array = buildQuery(rng.u32() & 0xffff, names[rng.u32() % names.length]!, types[rng.u32() % types.length]!);
  const shape = rng.u32() % 4;
  if (shape === 0) query = randomBytesOf(rng, rng.u32() % 600);
  else if (shape !== 1) query = mutate(rng, query, 1200);
  return ip(from, to, PROTOCOL_UDP, udp(from, to, 30000 + (rng.u32() % 30000), port, query));
}

// One history with a thousand clients (issue 18): the simulated network and the gateway keep up
// with an organisation's worth of connections, and the same invariants hold after every command
// as in the small worlds of sim.test.ts.
// About 60 s of CPU. SIM_THOUSAND (clients), SIM_THOUSAND_COMMANDS and SIM_THOUSAND_SEED change it.
// Seed 1,000 with 30 commands fails (reproduced in 5 s with SIM_THOUSAND=300): an AssignedIps sent
// right after the burst gets no answer within the transit bound. The client's node reports the
// connection connected, yet its encapsulate returns nothing (no WireGuard session to seal with, the
// packet waits for a handshake) and the packet never reaches the gateway's policy state within the
// bound. Not resolved: whether the world should wait for the WireGuard session after a burst, or
// the burst leaves sessions unfinished (a gateway under load answering with cookies?).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { commandArb, historyOf, runHistory, worldConfigArb } from './commands.ts';
import type { SimCommand, WorldConfig } from './world.ts';

const CLIENTS = Number(process.env['SIM_THOUSAND'] ?? 1_000);
const RANDOM_COMMANDS = Number(process.env['SIM_THOUSAND_COMMANDS'] ?? 20);
const SEED = Number(process.env['SIM_THOUSAND_SEED'] ?? 7);

test(`one history with ${CLIENTS} clients: all authorized at once and connected, then ${RANDOM_COMMANDS} random commands across them`, () => {
  const [generated] = fc.sample(worldConfigArb({ loss: false }), { numRuns: 1, seed: SEED });
  assert.ok(generated !== undefined);
  const nats = ['none', 'port-preserving', 'symmetric'] as const;
  // Relays on, so that clients behind symmetric NATs connect too.
  const config: WorldConfig = { ...generated, relays: Math.max(1, generated.relays), clientNats: Array.from({ length: CLIENTS }, (_, i) => nats[i % nats.length]!) };

  const spread = fc.sample(fc.nat(CLIENTS - 1), { numRuns: RANDOM_COMMANDS, seed: SEED });
  const random = fc.sample(commandArb, { numRuns: RANDOM_COMMANDS, seed: SEED }).map((command, i) => spreadOver(command, spread[i]!));
  const commands: SimCommand[] = [
    { kind: 'authorizeBurst', from: 0, to: CLIENTS },
    ...random,
  ];

  const world = runHistory(config, historyOf(commands));
  assert.ok(world.stats.flowsAuthorized >= CLIENTS, `${world.stats.flowsAuthorized} flows authorized for ${CLIENTS} clients`);
  assert.ok(world.stats.allowed + world.stats.denied > 0, 'the random commands sent no packet');
});

/** The generated commands name clients 0..2: move a command's client anywhere among the thousand. */
function spreadOver(command: SimCommand, client: number): SimCommand {
  return 'client' in command ? { ...command, client } : command;
}

// One history with a thousand clients (issue 18): the simulated network and the gateway keep up
// with an organisation's worth of connections, and the same invariants hold after every command
// as in the small worlds of sim.test.ts.
// About 60 s of CPU. SIM_THOUSAND (clients), SIM_THOUSAND_COMMANDS and SIM_THOUSAND_SEED change it.
// The burst ends once every client's WireGuard session is up, not only its ICE connection: past the
// gateway's handshake rate limit (100 a second) initiators get cookie replies and retry after 5 s
// (seed 1,000 with 30 commands sent packets into such a pending session before).
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

// The red-team attacker: the headless test client (same options, same control commands) plus the
// `attack` command of attacks.ts. Run it like the test client, inside a namespace, as root:
//   node --import tsx tools/attacker/main.ts --portal http://10.77.0.1:8081 --client-id <uuid> \
//     --relay 10.77.0.10:3478 --relay-secret s3cret --tun tun-fzattack
import { runClientProcess } from '../test-client/process.ts';
import { Attacker } from './attacks.ts';

runClientProcess('attacker', 'Red-team client: an authorized client that attacks the gateway it is connected to', new Attacker()).catch((error: unknown) => {
  process.stderr.write(`attacker: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});

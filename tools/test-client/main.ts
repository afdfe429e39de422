// The headless test client's command line (run inside the client's network namespace, as root):
//   node --import tsx tools/test-client/main.ts --portal http://10.0.0.1:8081 --client-id <uuid> \
//     --relay 10.0.0.1:3478 --relay-secret s3cret [--tun tun-fzclient] [--port 0] [--hosts-file <path>]
//     [--connect <resource id>]...
// Prints {"event":"ready",...} on stdout, then answers the JSON-line commands of control.ts read from stdin.
// Logs go to stderr (RUST_LOG filter, default info). Stops on `quit`, end of stdin, SIGINT or SIGTERM.
import { runClientProcess } from './process.ts';

runClientProcess('test-client', 'Headless Firezone test client: a client-role node with its own TUN device, driven by JSON lines on stdin').catch(
  (error: unknown) => {
    process.stderr.write(`test-client: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);

/**
 * Connection set-up time, ICE against ICE-less, through the compiled gateway (bench/lib/setup-time.ts):
 * authorization (the client's flow request) to the first byte back through the tunnel, on a
 * direct and on a relayed topology. `npm run bench:throughput` prints the same table at its end.
 *
 * usage: npm run bench:setup-time [-- --runs 10]
 */
import { formatSetupTimes, measureSetupTimes } from './lib/setup-time.ts';

const args = process.argv.slice(2);
const index = args.indexOf('--runs');
const runs = index === -1 ? 10 : Number(args[index + 1]);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs needs a positive integer');

const figures = [await measureSetupTimes('direct', runs), await measureSetupTimes('relayed', runs)];
console.log(formatSetupTimes(figures));

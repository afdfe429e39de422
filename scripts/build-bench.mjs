#!/usr/bin/env node
// Compiles benchmarks to JavaScript that runs against the compiled gateway in dist/, so a figure
// measures the code that ships, never a transpile-on-load path (tsx).
// Usage: node scripts/build-bench.mjs [entry.ts ...]   -> dist/bench/<entry name>.js
// (no entry: every bench/*.ts and tools/load-client/main.ts)
// Imports of src/ are not bundled: they become imports of the matching dist/ module (one copy of
// every gateway module, as in the real binary). Everything else the bench needs from bench/,
// test/support/ and tools/ is bundled in; packages stay in node_modules. Run `npm run build` first.
import { build } from 'esbuild';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { existsSync, readdirSync } from 'node:fs';

const root = resolve(new URL('..', import.meta.url).pathname);
const src = join(root, 'src') + sep;
const outdir = join(root, 'dist', 'bench');

const entries = process.argv.length > 2 ? process.argv.slice(2) : defaultEntries();

const compiledGateway = {
  name: 'compiled-gateway',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (args) => {
      const target = resolve(args.resolveDir, args.path);
      if (!target.startsWith(src)) return undefined;
      const compiled = join(root, 'dist', relative(src, target)).replace(/\.ts$/, '.js');
      if (!existsSync(compiled)) return { errors: [{ text: `${relative(root, compiled)} is missing: run npm run build first` }] };
      let path = relative(outdir, compiled).split(sep).join('/');
      if (!path.startsWith('.')) path = `./${path}`;
      return { path, external: true };
    });
  },
};

await build({
  entryPoints: Object.fromEntries(entries.map((entry) => [entryName(entry), join(root, entry)])),
  outdir,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
  plugins: [compiledGateway],
});

/** bench/scale.ts -> scale; tools/load-client/main.ts -> load-client. */
function entryName(entry) {
  const name = basename(entry).replace(/\.ts$/, '');
  return name === 'main' || name === 'index' ? basename(dirname(entry)) : name;
}

function defaultEntries() {
  const benches = readdirSync(join(root, 'bench')).filter((name) => name.endsWith('.ts')).map((name) => `bench/${name}`);
  const loadClient = 'tools/load-client/main.ts';
  return existsSync(join(root, loadClient)) ? [...benches, loadClient] : benches;
}

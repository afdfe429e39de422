#!/usr/bin/env node
// No static imports and nothing newer than what Node.js 12 parses: an older Node.js must reach
// the version check below rather than fail on a module, an API or the addon it cannot load.
const REQUIRED_NODE_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major < REQUIRED_NODE_MAJOR) {
  process.stderr.write(
    'firezone-gateway needs Node.js ' + REQUIRED_NODE_MAJOR + ' or newer, but runs on Node.js ' + process.version +
      ' (' + process.execPath + ').\n' +
      'Install Node.js ' + REQUIRED_NODE_MAJOR + ' LTS, or use the firezone-gateway release executable, which carries its own.\n',
  );
  process.exit(1);
} else {
  const entry = await import('./gateway-main.ts');
  await entry.run();
}

// Runs with a private, empty /dev/net (see tun-device.test.ts); prints a JSON report as its last line.
import { existsSync, statSync } from 'node:fs';
import { TunDevice } from '../../../src/runtime/tun-device.ts';

const existedBefore = existsSync('/dev/net/tun');
const tun = TunDevice.open('tun-firezone', { onPackets() {} });
const stat = statSync('/dev/net/tun');
tun.close();
console.log(
  JSON.stringify({
    existedBefore,
    isCharacterDevice: stat.isCharacterDevice(),
    major: Number(stat.rdev >> 8) & 0xfff,
    minor: Number(stat.rdev & 0xff),
  }),
);

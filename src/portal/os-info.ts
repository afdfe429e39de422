/**
 * Gathers the OS facts for the User-Agent the way the reference's `os_info` crate does on Linux:
 * the display name from `/etc/os-release` `ID`, `VERSION_ID` normalised to `X.Y.Z` when numeric,
 * the Rust architecture name and `uname -r`. This is the only IO in src/portal besides
 * connection.ts; `parseOsRelease` is pure.
 */
import { readFileSync } from 'node:fs';
import { arch, release } from 'node:os';
import type { OsFacts } from './user-agent.ts';

const DISPLAY_NAMES: Readonly<Record<string, string>> = {
  almalinux: 'AlmaLinux',
  alpine: 'Alpine Linux',
  amzn: 'Amazon Linux AMI',
  arch: 'Arch Linux',
  archarm: 'Arch Linux',
  centos: 'CentOS',
  debian: 'Debian',
  fedora: 'Fedora',
  kali: 'Kali Linux',
  linuxmint: 'Linux Mint',
  nixos: 'NixOS',
  ol: 'OracleLinux',
  opensuse: 'openSUSE',
  'opensuse-leap': 'openSUSE',
  'opensuse-tumbleweed': 'openSUSE',
  rhel: 'Red Hat Enterprise Linux',
  rocky: 'Rocky Linux',
  sles: 'SUSE Linux Enterprise Server',
  ubuntu: 'Ubuntu',
  void: 'Void Linux',
};

const RUST_ARCH: Readonly<Record<string, string>> = {
  x64: 'x86_64',
  arm64: 'aarch64',
  arm: 'arm',
  ia32: 'i686',
  riscv64: 'riscv64',
  ppc64: 'powerpc64',
  s390x: 's390x',
  loong64: 'loongarch64',
};

export function currentOsFacts(): OsFacts {
  let osRelease = '';
  try {
    osRelease = readFileSync('/etc/os-release', 'utf8');
  } catch {
    // No release file: os_info reports plain "Linux" with an unknown version.
  }
  const { osType, osVersion } = parseOsRelease(osRelease);
  const kernel = release();
  return { osType, osVersion, arch: RUST_ARCH[arch()] ?? (arch() || undefined), kernel: kernel === '' ? undefined : kernel };
}

export function parseOsRelease(text: string): { osType: string; osVersion: string } {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\s*([A-Z_]+)=(.*)$/.exec(line);
    if (match) values.set(match[1]!, match[2]!.trim().replace(/^(["'])(.*)\1$/, '$2'));
  }
  const osType = DISPLAY_NAMES[values.get('ID') ?? ''] ?? 'Linux';
  return { osType, osVersion: displayVersion(values.get('VERSION_ID') ?? '') };
}

function displayVersion(version: string): string {
  if (version === '') return 'Unknown';
  const numeric = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(version);
  if (!numeric) return version;
  return `${Number(numeric[1])}.${Number(numeric[2] ?? 0)}.${Number(numeric[3] ?? 0)}`;
}

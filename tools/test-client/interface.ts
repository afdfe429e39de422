/**
 * The client's TUN interface with iproute2: its tunnel addresses (/32, /128), MTU 1280, link up,
 * and main-table routes to the device for the resources it reaches (with the tunnel address as
 * source, so programs in the namespace send from it).
 */
import { execFile } from 'node:child_process';
import { formatCidr, type Cidr } from '../../src/ip/cidr.ts';

export const CLIENT_TUN_NAME = 'tun-fzclient';
export const CLIENT_TUN_MTU = 1280;

export type IpCommand = (args: readonly string[]) => Promise<void>;

export const runIp: IpCommand = (args) =>
  new Promise((resolve, reject) => {
    execFile('ip', [...args], { timeout: 5_000 }, (error, _stdout, stderr) => {
      if (error === null) resolve();
      else reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || error.message}`));
    });
  });

export interface TunnelIps {
  readonly ipv4: string;
  readonly ipv6: string;
}

export class ClientInterface {
  constructor(
    readonly name: string,
    private readonly ips: TunnelIps,
    private readonly run: IpCommand = runIp,
  ) {}

  async configure(): Promise<void> {
    await this.run(['address', 'flush', 'dev', this.name]);
    await this.run(['address', 'add', `${this.ips.ipv4}/32`, 'dev', this.name]);
    await this.run(['-6', 'address', 'add', `${this.ips.ipv6}/128`, 'dev', this.name, 'nodad']);
    await this.run(['link', 'set', 'dev', this.name, 'mtu', String(CLIENT_TUN_MTU), 'up']);
  }

  async addRoute(cidr: Cidr): Promise<void> {
    const family = cidr.address.family === 4 ? '-4' : '-6';
    const source = cidr.address.family === 4 ? this.ips.ipv4 : this.ips.ipv6;
    await this.run([family, 'route', 'replace', formatCidr(cidr), 'dev', this.name, 'src', source]);
  }

  async removeRoute(cidr: Cidr): Promise<void> {
    const family = cidr.address.family === 4 ? '-4' : '-6';
    await this.run([family, 'route', 'del', formatCidr(cidr), 'dev', this.name]).catch(() => undefined);
  }
}

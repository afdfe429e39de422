/**
 * What an operator can do about the portal's refusals, said once beside the reference's own lines (which stay
 * word for word): a refused or expired token is fatal, a 403 is retried but usually needs a person.
 */
import type { ChannelEvent } from './phoenix-channel.ts';

const TOKEN_REFUSED =
  "The portal refused this gateway's token (401). Check that FIREZONE_TOKEN, or the systemd credential " +
  '/etc/firezone/gateway-token, holds the whole token of this site as the portal showed it, with nothing added; ' +
  'a token deleted or regenerated in the portal must be replaced with the new one.';
const TOKEN_EXPIRED =
  "The portal says this gateway's token has expired: deploy a new gateway token for this site in the portal and " +
  'put it in FIREZONE_TOKEN (or /etc/firezone/gateway-token), then start the gateway again.';
const FORBIDDEN =
  'The portal answers 403 Forbidden. The gateway keeps retrying, but this usually needs a person: the account or ' +
  'site may be disabled, or something between the gateway and the portal (a proxy, a firewall) refuses the request.';

export class OperatorHints {
  private forbiddenSaid = false;

  /** The hint for this event, the first time it applies. */
  forEvent<M>(event: ChannelEvent<M>): string | undefined {
    if (event.kind === 'fatal') {
      if (event.error.code === 'invalidToken') return TOKEN_REFUSED;
      if (event.error.code === 'tokenExpired') return TOKEN_EXPIRED;
      return undefined;
    }
    if (event.kind === 'hiccup' && !this.forbiddenSaid && /HTTP error: 403\b/.test(event.error)) {
      this.forbiddenSaid = true;
      return FORBIDDEN;
    }
    return undefined;
  }
}

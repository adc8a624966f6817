// Who is calling: the client certificate of the TLS connection, verified as an
// X.509-SVID of our trust domain (DESIGN §5). People (/user/<name>) and
// controllers may use the API; any other identity, or none, gets 401.
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { SvidVerifier, type TrustBundleInput } from "../../../identity/verify.js";
import { principalOf, type Principal } from "../../../identity/spiffe-id.js";
import { unauthorized, forbidden } from "./status.js";

export interface Caller {
  /** The SPIFFE ID, or "dev-insecure" without TLS. */
  readonly id: string;
  readonly principal: Principal | { kind: "anonymous-dev" };
  /** A name for field managers and logs: the user name or controller name. */
  readonly user: string;
}

export type Authorizer = (p: Principal) => boolean;

/** Users and controllers may call the API (workloads and nodes may not). */
export const allowUsersAndControllers: Authorizer = (p) => p.kind === "user" || p.kind === "controller";

export interface Authenticator {
  authenticate(req: IncomingMessage): Promise<Caller>;
}

export const DEV_CALLER: Caller = { id: "dev-insecure", principal: { kind: "anonymous-dev" }, user: "dev" };

/** For --dev-insecure on 127.0.0.1: everyone is the dev user. */
export const devAuthenticator: Authenticator = { authenticate: async () => DEV_CALLER };

export interface CertAuthenticatorOptions {
  bundle: TrustBundleInput;
  trustDomain: string;
  authorize?: Authorizer;
  now?: () => number;
}

export function certAuthenticator(
  opts: CertAuthenticatorOptions,
): Authenticator & { setBundle(b: TrustBundleInput): void } {
  const verifier = new SvidVerifier({
    bundle: opts.bundle,
    trustDomain: opts.trustDomain,
    ...(opts.now ? { now: opts.now } : {}),
  });
  const authorize = opts.authorize ?? allowUsersAndControllers;
  return {
    setBundle: (b) => verifier.setBundle(b),
    async authenticate(req) {
      const socket = req.socket as TLSSocket;
      const peer =
        typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate(false) : undefined;
      const raw = peer && "raw" in peer ? (peer.raw as Buffer | undefined) : undefined;
      if (!raw || raw.length === 0)
        throw unauthorized("a client certificate (an X.509-SVID of the trust domain) is required");
      let principal: Principal;
      let id: string;
      try {
        const verified = await verifier.verify(new Uint8Array(raw));
        id = verified.id.toString();
        principal = principalOf(verified.id);
      } catch (err) {
        throw unauthorized(err instanceof Error ? err.message : String(err));
      }
      if (!authorize(principal)) throw forbidden(`${id} may not use this API`);
      const user =
        principal.kind === "user"
          ? principal.name
          : principal.kind === "controller"
            ? `${principal.name}/${principal.instance}`
            : id;
      return { id, principal, user };
    },
  };
}

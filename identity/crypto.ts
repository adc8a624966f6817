// One place that wires @peculiar/x509 to Node's WebCrypto (DESIGN §8: it needs
// reflect-metadata loaded first and a crypto provider set). Only the CA side
// (issuing, test fixtures) needs it; verification and keys live in x509-free
// modules (webcrypto.ts, certificate.ts) so the watchdog never loads this.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
export type { CryptoKey, CryptoKeyPair } from "./webcrypto.js";
export { subtle, EC_ALG, SIGN_ALG, generateKeyPair, exportPkcs8Pem, importPkcs8Pem } from "./webcrypto.js";

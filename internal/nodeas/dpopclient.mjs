// A DPoP client for tokengate's Go tests: proofs are made by panva's `dpop`
// package (RFC 9449, pinned in package.json), the client implementation
// real JavaScript applications use, not by the tests' own code.
//
//   node dpopclient.mjs
//
// Protocol: one JSON request per line on stdin, one JSON answer per line on
// stdout, in order.
//   {"op":"key","alg":"ES256"|"PS256"|"RS256"|"Ed25519"}
//       -> {"key":N,"jkt":"<RFC 7638 thumbprint>"}
//   {"op":"proof","key":N,"htm":"GET","htu":"https://...","token":"...",
//    "skew":S,"tamper":"..."}
//       -> {"proof":"<jwt>"}
// skew shifts the client's clock by S seconds (stale or future iat, as a
// client with a wrong clock makes them). tamper builds the malformed proofs
// a hostile client would send, starting from the library's proof:
//   typ_jwt      the header's typ is "JWT" (re-signed with the same key)
//   alg_none     alg "none" and no signature
//   private_jwk  the jwk header also holds the private key (re-signed)
//   bad_signature  one bit of the signature flipped
// The process exits when stdin closes. Errors: {"error":"..."}.
import * as readline from 'node:readline';
import { generateKeyPair, generateProof, calculateThumbprint } from 'dpop';

const keys = [];
const subtle = globalThis.crypto.subtle;

const b64u = (buf) => Buffer.from(buf).toString('base64url');
const fromB64u = (s) => Buffer.from(s, 'base64url');

function signParams(key) {
  switch (key.algorithm.name) {
    case 'ECDSA': return { name: 'ECDSA', hash: 'SHA-256' };
    case 'RSA-PSS': return { name: 'RSA-PSS', saltLength: 32 };
    default: return { name: key.algorithm.name };
  }
}

async function resign(header, payload, privateKey) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  const sig = await subtle.sign(signParams(privateKey), privateKey, Buffer.from(input));
  return `${input}.${b64u(sig)}`;
}

async function handle(req) {
  switch (req.op) {
    case 'key': {
      const kp = await generateKeyPair(req.alg, { extractable: true });
      keys.push(kp);
      return { key: keys.length - 1, jkt: await calculateThumbprint(kp.publicKey) };
    }
    case 'proof': {
      const kp = keys[req.key];
      if (!kp) throw new Error(`no key ${req.key}`);
      const realNow = Date.now;
      if (req.skew) Date.now = () => realNow() + req.skew * 1000;
      let proof;
      try {
        proof = await generateProof(kp, req.htu, req.htm, req.nonce || undefined, req.token || undefined);
      } finally {
        Date.now = realNow;
      }
      if (!req.tamper) return { proof };
      const [h, p, s] = proof.split('.');
      const header = JSON.parse(fromB64u(h));
      const payload = JSON.parse(fromB64u(p));
      switch (req.tamper) {
        case 'typ_jwt':
          return { proof: await resign({ ...header, typ: 'JWT' }, payload, kp.privateKey) };
        case 'alg_none':
          return { proof: `${b64u(JSON.stringify({ ...header, alg: 'none' }))}.${p}.` };
        case 'private_jwk': {
          const priv = await subtle.exportKey('jwk', kp.privateKey);
          return { proof: await resign({ ...header, jwk: { ...header.jwk, d: priv.d } }, payload, kp.privateKey) };
        }
        case 'bad_signature': {
          const sig = fromB64u(s);
          sig[sig.length - 1] ^= 1;
          return { proof: `${h}.${p}.${b64u(sig)}` };
        }
        default:
          throw new Error(`unknown tamper ${req.tamper}`);
      }
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
// Answers must leave in request order: chain them.
let chain = Promise.resolve();
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let out;
    try {
      out = await handle(JSON.parse(line));
    } catch (err) {
      out = { error: String(err && err.message || err) };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  });
});
rl.on('close', () => { chain.then(() => process.exit(0)); });

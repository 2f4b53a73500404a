// HashML-DSA verification (FIPS 204 §5.4, Algorithm 5) of a signature the
// module made, by @noble/post-quantum: code not ours, no Go library has it
// (docs/pqc.md). Usage: node verify.mjs pk hash msg ctx sig
//   pk   the FIPS 204 public key (CKA_VALUE); its size gives the parameter set
//   hash sha256 | sha384 (the pre-hash)
//   msg  the message M (the pre-hash is computed here, never taken from the module)
//   ctx  the context string (may be empty)
//   sig  the signature
// Exit 0: valid; 1: invalid; 2: usage or input error.
import { readFileSync } from 'node:fs';
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { getMessagePrehash } from '@noble/post-quantum/utils.js';
import { sha256, sha384 } from '@noble/hashes/sha2.js';

const [pkFile, hashName, msgFile, ctxFile, sigFile] = process.argv.slice(2);
if (!sigFile) {
  console.error('usage: verify.mjs pk sha256|sha384 msg ctx sig');
  process.exit(2);
}
const read = (f) => new Uint8Array(readFileSync(f));
const pk = read(pkFile), msg = read(msgFile), ctx = read(ctxFile), sig = read(sigFile);
const scheme = { 1312: ml_dsa44, 1952: ml_dsa65, 2592: ml_dsa87 }[pk.length];
const hash = { sha256, sha384 }[hashName];
if (!scheme || !hash) {
  console.error(`no ML-DSA public key of ${pk.length} bytes, or no hash ${hashName}`);
  process.exit(2);
}
let ok;
try {
  // noble's HashML-DSA wrapper refuses a pre-hash weaker than the
  // parameter set's level (FIPS 204 §5.4 says "should"): SHA-256 for
  // ML-DSA-65/87, SHA-384 for ML-DSA-87. For those, the same as the
  // wrapper does without that check: noble's M' (1 || len(ctx) || ctx ||
  // OID || PH(M)) and its ML-DSA.Verify_internal.
  let wrapper = null;
  try {
    wrapper = scheme.prehash(hash);
  } catch {}
  ok = wrapper
    ? wrapper.verify(sig, msg, pk, { context: ctx })
    : scheme.internal.verify(sig, getMessagePrehash(hash, msg, ctx), pk, { externalMu: false });
} catch (e) {
  console.error(`verify: ${e.message}`);
  process.exit(2);
}
if (!ok) console.error('HashML-DSA signature invalid');
process.exit(ok ? 0 : 1);

// An independent implementation of the exchange's sealed payloads, on hpke-js (@hpke/core,
// @hpke/hybridkem-x-wing, @hpke/dhkem-x25519), WebCrypto AES-GCM and node:crypto SHA-256,
// with its own RFC 8785 serializer. It shares no code with the Python implementation.
//
// Reads one JSON document on stdin, {"requests": [...]}, and writes {"results": [...]}:
//   {"op": "public", "key": "<kem>:<base64url seed>"}
//       -> {"kem", "public_key", "kid"}: the key pair derived from the key file's line
//   {"op": "open", "header", "sealed", "node", "key"}
//       -> {"plaintext", "cek"} (base64url), or {"error": "..."}
//   {"op": "seal", "header", "payload", "recipients": [{"node", "kem", "public_key"}]}
//       -> {"sealed", "cek"}
import { createHash, createPrivateKey, createPublicKey, webcrypto } from "node:crypto";
import { Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { XWing } from "@hpke/hybridkem-x-wing";

const subtle = webcrypto.subtle;
const text = new TextEncoder();
const SUITES = {
  "X-Wing": new CipherSuite({ kem: new XWing(), kdf: new HkdfSha256(), aead: new Aes256Gcm() }),
  X25519: new CipherSuite({
    kem: new DhkemX25519HkdfSha256(),
    kdf: new HkdfSha256(),
    aead: new Aes256Gcm(),
  }),
};
const ENC_LENGTH = { "X-Wing": 1120, X25519: 32 };
// PKCS#8 prefix of a raw X25519 private key (RFC 8410), for node:crypto.
const X25519_PKCS8 = Buffer.from("302e020100300506032b656e04220420", "hex");

const b64 = (bytes) => Buffer.from(bytes).toString("base64url");
const unb64 = (s) => new Uint8Array(Buffer.from(s, "base64url"));
const sha256 = (...parts) => {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return new Uint8Array(hash.digest());
};

// RFC 8785: JSON.stringify writes strings and numbers as JCS does; keys sort by UTF-16 code
// units, which is JavaScript's default sort.
function jcs(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(jcs).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${jcs(value[k])}`).join(",")}}`;
}

function parseKeyLine(line) {
  const at = line.indexOf(":");
  const kem = line.slice(0, at);
  if (!(kem in SUITES)) throw new Error(`unknown kem ${kem}`);
  return { kem, secret: unb64(line.slice(at + 1).trim()) };
}

async function publicKeyOf(kem, secret) {
  if (kem === "X-Wing") {
    const kem_ = SUITES[kem].kem;
    const pair = await kem_.generateKeyPairDerand(secret);
    return new Uint8Array(await kem_.serializePublicKey(pair.publicKey));
  }
  const key = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8, secret]),
    format: "der",
    type: "pkcs8",
  });
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(spki.length - 32));
}

const info = (header) => text.encode(`xb-cek/v1 ${header.id}`);

async function open({ header, sealed, node, key }) {
  const { kem, secret } = parseKeyLine(key);
  const entry = sealed.recipients.find((r) => r.node === node);
  if (!entry) return { error: "not-for-me" };
  const kid = Buffer.from(sha256(await publicKeyOf(kem, secret))).toString("hex");
  if (entry.kid !== kid || entry.kem !== kem) return { error: "key-unknown" };
  const suite = SUITES[kem];
  const recipientKey = await suite.kem.importKey("raw", secret, false);
  const enc = unb64(entry.enc);
  const split = ENC_LENGTH[kem];
  let cek;
  try {
    cek = new Uint8Array(
      await suite.open(
        { recipientKey, enc: enc.slice(0, split), info: info(header) },
        enc.slice(split),
      ),
    );
  } catch (err) {
    return { error: `hpke: ${err.message}` };
  }
  const commitment = sha256(text.encode("xb-cek/v1"), cek);
  if (b64(commitment) !== sealed.commitment) return { error: "commitment" };
  const aesKey = await subtle.importKey("raw", cek, "AES-GCM", false, ["decrypt"]);
  let plaintext;
  try {
    plaintext = await subtle.decrypt(
      { name: "AES-GCM", iv: unb64(sealed.nonce), additionalData: text.encode(jcs(header)) },
      aesKey,
      unb64(sealed.ciphertext),
    );
  } catch (err) {
    return { error: `aes-gcm: ${err.message}` };
  }
  return { plaintext: b64(new Uint8Array(plaintext)), cek: b64(cek) };
}

async function seal({ header, payload, recipients }) {
  const cek = webcrypto.getRandomValues(new Uint8Array(32));
  const nonce = webcrypto.getRandomValues(new Uint8Array(12));
  const aesKey = await subtle.importKey("raw", cek, "AES-GCM", false, ["encrypt"]);
  const ciphertext = await subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: text.encode(jcs(header)) },
    aesKey,
    text.encode(jcs(payload)),
  );
  const entries = [];
  for (const { node, kem, public_key } of recipients) {
    const suite = SUITES[kem];
    const publicBytes = unb64(public_key);
    const recipientPublicKey = await suite.kem.deserializePublicKey(publicBytes);
    const sender = await suite.createSenderContext({ recipientPublicKey, info: info(header) });
    const sealedCek = new Uint8Array(await sender.seal(cek));
    const enc = new Uint8Array(sender.enc);
    entries.push({
      node,
      kid: Buffer.from(sha256(publicBytes)).toString("hex"),
      kem,
      enc: b64(Buffer.concat([enc, sealedCek])),
    });
  }
  return {
    sealed: {
      alg: "A256GCM",
      nonce: b64(nonce),
      ciphertext: b64(new Uint8Array(ciphertext)),
      commitment: b64(sha256(text.encode("xb-cek/v1"), cek)),
      recipients: entries,
    },
    cek: b64(cek),
  };
}

async function publicOp({ key }) {
  const { kem, secret } = parseKeyLine(key);
  const publicKey = await publicKeyOf(kem, secret);
  return { kem, public_key: b64(publicKey), kid: Buffer.from(sha256(publicKey)).toString("hex") };
}

const OPS = { open, seal, public: publicOp };
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { requests } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const results = [];
for (const request of requests) results.push(await OPS[request.op](request));
process.stdout.write(JSON.stringify({ results }));

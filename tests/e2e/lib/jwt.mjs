// A tiny JWT signer for the e2e tests, on node:crypto alone.
//
// Good tokens: sign(claims({...}), { alg: 'HS256', secret }) for HS256/384/512,
// sign(payload, { alg: 'RS256' | 'ES256', privateKey: pem }) with keys from
// generateKeys(). Bad tokens, each the attack or mistake its name says:
// noneToken, algConfusionToken, withAlg, tamper, and the malformed.* family.
// The server under test must refuse every bad one with the code CONTRACT §2
// names (token_algorithm, token_invalid, …); see tests/unit/test_auth.c for
// the codes each case gets.

import crypto from 'node:crypto';

const HMAC = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };

// Unpadded base64url of a Buffer or a string (UTF-8).
export function b64url(input) {
    return Buffer.from(input).toString('base64url');
}

// A JSON value as a JWS segment.
export function segment(value) {
    return b64url(typeof value === 'string' ? value : JSON.stringify(value));
}

// Seconds since the epoch, as JWT NumericDate claims want.
export function nowSeconds() {
    return Math.floor(Date.now() / 1000);
}

// A payload: sub (default "user-1"), iat, exp = now + ttl (seconds), plus
// whatever else is given. `nbfIn` sets nbf that many seconds from now; a
// member given as undefined or null is left out (claims({ exp: null }) has no
// exp, claims({ sub: undefined }) no sub).
export function claims(opts = {}) {
    const { ttl = 3600, nbfIn, now = nowSeconds(), ...rest } = opts;
    const out = { sub: 'user-1', iat: now, exp: now + ttl };
    if (nbfIn !== undefined) out.nbf = now + nbfIn;
    Object.assign(out, rest);
    for (const k of Object.keys(out)) if (out[k] === undefined || out[k] === null) delete out[k];
    return out;
}

// The signature bytes of `input` (the "header.payload" text) for `alg`.
function signatureOf(alg, input, { secret, privateKey }) {
    if (HMAC[alg]) {
        if (secret === undefined) throw new Error(`jwt.sign: ${alg} needs a secret`);
        return crypto.createHmac(HMAC[alg], secret).update(input).digest();
    }
    if (privateKey === undefined) throw new Error(`jwt.sign: ${alg} needs a privateKey`);
    if (alg === 'RS256') return crypto.sign('sha256', Buffer.from(input), privateKey);
    // JWS wants ECDSA as raw r||s (64 bytes for P-256), not DER.
    if (alg === 'ES256') {
        return crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    }
    throw new Error(`jwt.sign: unsupported alg ${alg}`);
}

// A signed token. `header` members are merged over {alg, typ:"JWT"}; a header
// or payload given as a string is used as the raw JSON text.
export function sign(payload, { alg = 'HS256', secret, privateKey, header = {} } = {}) {
    const h = typeof header === 'string' ? header : { alg, typ: 'JWT', ...header };
    const input = `${segment(h)}.${segment(payload)}`;
    return `${input}.${b64url(signatureOf(alg, input, { secret, privateKey }))}`;
}

// RSA (2048 bits) and EC (P-256) key pairs as PEM: public keys SPKI
// ("BEGIN PUBLIC KEY", what --jwt-public-key reads), private keys PKCS#8.
export function generateKeys() {
    const enc = {
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    };
    return {
        rsa: crypto.generateKeyPairSync('rsa', { modulusLength: 2048, ...enc }),
        ec: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256', ...enc }),
    };
}

// An unsigned token: header {"alg":"none"}, empty signature ("xxx.yyy.").
// `algName` varies the spelling ("None", "NONE"); `signature` appends one anyway.
export function noneToken(payload, { algName = 'none', signature = '' } = {}) {
    return `${segment({ alg: algName, typ: 'JWT' })}.${segment(payload)}.${signature}`;
}

// Algorithm confusion: an HS256 (or other HS*) token whose HMAC key is the
// server's RSA/EC public key PEM text. Bare libjwt 1.10 accepts it.
export function algConfusionToken(payload, publicKeyPem, alg = 'HS256') {
    return sign(payload, { alg, secret: publicKeyPem });
}

// A token whose header claims `alg` but signed as `signAs` with the given key
// material, e.g. withAlg(p, 'HS512', { secret }) against an HS256 server.
export function withAlg(payload, alg, { secret, privateKey, signAs = alg } = {}) {
    const input = `${segment({ alg, typ: 'JWT' })}.${segment(payload)}`;
    return `${input}.${b64url(signatureOf(signAs, input, { secret, privateKey }))}`;
}

// The same token with one payload character changed: the signature no longer matches.
export function tamper(token) {
    const [h, p, s] = token.split('.');
    const i = Math.floor(p.length / 2);
    const c = p[i] === 'A' ? 'B' : 'A';
    return `${h}.${p.slice(0, i)}${c}${p.slice(i + 1)}.${s}`;
}

// Decodes without verifying (for assertions in tests).
export function decode(token) {
    const [h, p] = token.split('.');
    return {
        header: JSON.parse(Buffer.from(h, 'base64url').toString()),
        payload: JSON.parse(Buffer.from(p, 'base64url').toString()),
    };
}

// Malformed tokens: every one must be refused as token_invalid.
export const malformed = {
    // "header.payload": the signature segment is missing.
    twoSegments: (token) => token.split('.').slice(0, 2).join('.'),
    // A fourth segment.
    fourSegments: (token) => `${token}.AAAA`,
    // Standard-alphabet base64 characters and padding are not base64url.
    badBase64: (token) => `${token.slice(0, 3)}+/=${token.slice(6)}`,
    // Over the server's 8 KiB bound, correctly signed.
    huge: (secret, size = 9000, alg = 'HS256') => sign(claims({ pad: 'x'.repeat(size) }), { alg, secret }),
    // A header that is not JSON, correctly signed.
    headerNotJson: (payload, secret, alg = 'HS256') => sign(payload, { alg, secret, header: 'not json' }),
    // A payload that is not JSON, correctly signed.
    payloadNotJson: (secret, alg = 'HS256') => sign('not json', { alg, secret }),
    // Not a JWT at all.
    garbage: () => 'not-a-jwt',
    empty: () => '',
};

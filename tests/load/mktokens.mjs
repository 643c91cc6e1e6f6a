// Writes JWTs for the generator's --token-file, one per line, each with its own
// user: node mktokens.mjs COUNT --hs256 SECRET | --rs256 PRIVATE_KEY.pem [--room bench] [--ttl 3600] > tokens.txt
// Claims: sub "u<i>", iat, exp; "join" and "rooms" hold --room so switchboard may
// put the socket in the room at connect (CONTRACT §2). No dependencies.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';

const { values: o, positionals } = parseArgs({
    allowPositionals: true,
    options: {
        hs256: { type: 'string' },
        rs256: { type: 'string' },
        room: { type: 'string', default: 'bench' },
        ttl: { type: 'string', default: '3600' },
    },
});
const count = Number(positionals[0]);
if (!Number.isInteger(count) || count < 1 || (!o.hs256 && !o.rs256)) {
    console.error('usage: node mktokens.mjs COUNT --hs256 SECRET | --rs256 KEY.pem [--room R] [--ttl S]');
    process.exit(2);
}
const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
const alg = o.hs256 ? 'HS256' : 'RS256';
const key = o.rs256 ? crypto.createPrivateKey(fs.readFileSync(o.rs256)) : null;
const head = b64({ alg, typ: 'JWT' });
const now = Math.floor(Date.now() / 1000);
const out = [];
for (let i = 0; i < count; i++) {
    const body = b64({ sub: `u${i}`, iat: now, exp: now + Number(o.ttl), join: [o.room], rooms: [o.room] });
    const input = `${head}.${body}`;
    const sig = o.hs256
        ? crypto.createHmac('sha256', o.hs256).update(input).digest('base64url')
        : crypto.sign('RSA-SHA256', Buffer.from(input), key).toString('base64url');
    out.push(`${input}.${sig}`);
}
process.stdout.write(out.join('\n') + '\n');

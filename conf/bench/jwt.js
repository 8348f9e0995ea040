// conf/bench/jwt.js -- the njs anchor of `make bench` (njs 0.7.x, WebCrypto).
//
// An RS256 access-token check written the way an nginx user would write it
// in njs, for the same tokens the module checks:
//
//   js_path "<build/bench>";              (where bench_key.js is written)
//   js_import jwt from conf/bench/jwt.js;
//   location /njs/    { auth_request /_jwt; proxy_pass http://backend; }
//   location = /_jwt  { internal; js_content jwt.verify; }
//
// bench_key.js (written by conf/bench/run) exports the issuer, audience,
// kid and the RSA public key as base64 DER SubjectPublicKeyInfo: njs 0.7.9
// cannot import RSA keys as "jwk" ("unsupported key fmt").  njs 0.7 keeps
// no state between requests (each runs in a fresh copy of the VM, and a
// CryptoKey only comes out of a Promise), so the key is imported on every
// request, as any njs JWT check on this version has to.
//
// Checks: Bearer syntax, three base64url parts, header alg RS256 and kid,
// typ at+jwt, the RSASSA-PKCS1-v1_5 SHA-256 signature, then iss, aud,
// exp and iat (60 s leeway), and the presence of sub, client_id and jti.
// Answers 204 (allow) or 401 (refuse); auth_request turns those into the
// request going on to the backend or a 401.

import bench from 'bench_key.js';

var LEEWAY = 60;
var SPKI = Buffer.from(bench.spki, 'base64');

function b64urlJSON(s) {
    return JSON.parse(Buffer.from(s, 'base64url').toString());
}

async function verify(r) {
    try {
        var h = r.headersIn.Authorization;

        if (h === undefined || h.length > 8192) {
            r.return(401);
            return;
        }

        var m = /^Bearer +([\w-]+)\.([\w-]+)\.([\w-]+)$/i.exec(h);
        if (m === null) {
            r.return(401);
            return;
        }

        var hdr = b64urlJSON(m[1]);
        if (hdr.alg !== 'RS256' || hdr.kid !== bench.kid
            || typeof hdr.typ !== 'string'
            || (hdr.typ.toLowerCase() !== 'at+jwt'
                && hdr.typ.toLowerCase() !== 'application/at+jwt')
            || hdr.crit !== undefined)
        {
            r.return(401);
            return;
        }

        var key = await crypto.subtle.importKey('spki', SPKI,
                      {name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256'},
                      false, ['verify']);

        var ok = await crypto.subtle.verify({name: 'RSASSA-PKCS1-v1_5'}, key,
                      Buffer.from(m[3], 'base64url'),
                      Buffer.from(m[1] + '.' + m[2]));
        if (!ok) {
            r.return(401);
            return;
        }

        var c = b64urlJSON(m[2]);
        var now = Math.floor(Date.now() / 1000);
        var aud = Array.isArray(c.aud) ? c.aud : [c.aud];

        if (c.iss !== bench.iss || aud.indexOf(bench.aud) < 0
            || typeof c.exp !== 'number' || c.exp + LEEWAY <= now
            || typeof c.iat !== 'number' || c.iat - LEEWAY > now
            || (c.nbf !== undefined
                && (typeof c.nbf !== 'number' || c.nbf - LEEWAY > now))
            || typeof c.sub !== 'string' || typeof c.client_id !== 'string'
            || typeof c.jti !== 'string')
        {
            r.return(401);
            return;
        }

        r.return(204);

    } catch (e) {
        r.return(401);
    }
}

export default {verify};

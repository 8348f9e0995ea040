#!/usr/bin/perl

# JWT access-token validation, end to end (spec: welby_issuer, welby_token,
# welby_token_binding, welby_realm, welby_revocation, welby_token_cache).
#
# The heart of the file is one table: each row is a request (a token, or a
# raw set of headers), the status it must get and the reason code the
# OperationOutcome names.  A row is one check; it also asserts the
# WWW-Authenticate challenge (realm only when no token was sent,
# error="invalid_token" for an invalid one, error="invalid_request" for a
# 400), Content-Type application/fhir+json and $welby_reason.  Accepted
# rows assert that the backend answered and that no challenge was sent.
#
# After the table: what the backend receives, the variables, the token
# cache with revocation, and the configuration errors nginx -t reports.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Crypt::PK::ECC;
use Time::HiRes qw(sleep time);
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(b64u b64u_decode gen_key jwt claims header write_jwks
    write_pem write_secret public_jwk x5t_s256 unique_jti);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $ISS   = 'https://issuer.test';
my $AUD   = 'https://fhir.test';
my $AUD2  = 'https://fhir2.test';
my $OTHER = 'https://other.test';
my $NOW   = int(time());

###############################################################################
# keys

my %K;      # the main issuer's keys, by alg (kid = lower-case alg)
$K{$_} = gen_key($_, kid => lc $_)
    for qw(RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA);
$K{"HS$_"} = gen_key("HS$_") for 256, 384, 512;

my $attacker  = gen_key('RS256', kid => 'attacker');
my $attacker_ec = gen_key('ES256', kid => 'attacker-ec');
my $other_es  = gen_key('ES256', kid => 'es256');    # same kid as main's
my $other_1   = gen_key('ES256', kid => 'other-1');
my $pem_rsa   = gen_key('RS256');                    # no kid
my $pem_ec    = gen_key('ES256', kid => 'ec-pem');

write_jwks("$d/main.jwks", map { $K{$_} }
    qw(RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA));
write_jwks("$d/other.jwks", $other_es, $other_1);
write_secret("$d/hs$_.key", $K{"HS$_"}) for 256, 384, 512;
write_pem("$d/rsa.pem", $pem_rsa);
write_pem("$d/ec.pem", $pem_ec);

# revocation: one jti, and every token of one subject issued before a time
my $SUB_NB = $NOW - 30;
$t->write_file('revoked.txt', <<"EOF");
# revoked access tokens
jti revoked-jti-1

sub revoked-sub $SUB_NB
EOF

###############################################################################
# TLS: a server certificate, a CA and two client certificates

sub ossl {
    my $out = `openssl @_ 2>&1`;
    die "openssl @_: $out" if $?;
    return $out;
}

ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes"
    . " -days 1 -subj /CN=localhost -keyout $d/server.key -out $d/server.crt");
ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes"
    . " -days 1 -subj /CN=welby-test-ca -keyout $d/ca.key -out $d/ca.crt");
for my $c (qw(client1 client2)) {
    ossl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes"
        . " -subj /CN=$c -keyout $d/$c.key -out $d/$c.csr");
    ossl("x509 -req -in $d/$c.csr -CA $d/ca.crt -CAkey $d/ca.key"
        . " -set_serial 0x" . unpack('H*', pack('N', int rand 2**31))
        . " -sha256 -days 1 -out $d/$c.crt");
    ossl("x509 -in $d/$c.crt -outform DER -out $d/$c.der");
}
my %X5T = map { $_ => x5t_s256($t->read_file("$_.der")) } qw(client1 client2);

###############################################################################

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://issuer.test keys=%%TESTDIR%%/main.jwks
                 audience=https://fhir.test audience=https://fhir2.test;
    welby_issuer https://other.test keys=%%TESTDIR%%/other.jwks
                 audience=https://fhir.test;
    welby_issuer https://hs256.test secret=%%TESTDIR%%/hs256.key
                 algorithms=HS256 audience=https://fhir.test;
    welby_issuer https://hs384.test secret=%%TESTDIR%%/hs384.key
                 algorithms=HS384 audience=https://fhir.test;
    welby_issuer https://hs512.test secret=%%TESTDIR%%/hs512.key
                 algorithms=HS512 audience=https://fhir.test;
    welby_issuer https://pem.test keys=%%TESTDIR%%/rsa.pem algorithms=RS256
                 audience=https://fhir.test;
    welby_issuer https://pem-ec.test keys=%%TESTDIR%%/ec.pem kid=ec-pem
                 audience=https://fhir.test;
    welby_issuer https://lifetime.test keys=%%TESTDIR%%/main.jwks
                 max_lifetime=1h audience=https://fhir.test;
    welby_issuer https://jwt.test keys=%%TESTDIR%%/main.jwks typ=jwt
                 audience=https://fhir.test;
    welby_issuer https://require.test keys=%%TESTDIR%%/main.jwks
                 require=patient,scope audience=https://fhir.test;
    welby_issuer https://es-only.test keys=%%TESTDIR%%/main.jwks
                 algorithms=ES256 audience=https://fhir.test;

    # room for the oversized tokens, at the gateway and at the echo
    # backend it proxies to: nginx itself must not refuse them
    large_client_header_buffers 4 32k;

    welby_revocation %%TESTDIR%%/revoked.txt check=1s;
    welby_token_cache zone=welby_tokens:1m ttl=5m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            welby_strip_header X-Remote-User;

            add_header X-Reason $welby_reason always;
            add_header X-Sub $welby_sub always;
            add_header X-Client-Id $welby_client_id always;
            add_header X-Iss $welby_iss always;
            add_header X-Jti $welby_jti always;
            add_header X-Scope $welby_scope always;
            add_header X-Patient $welby_patient always;
            add_header X-Fhir-User $welby_fhir_user always;
            add_header X-Amr $welby_amr always;
            add_header X-Claim-Tenant $welby_claim_tenant always;
            add_header X-Claim-Level $welby_claim_level always;
            add_header X-Claim-Groups $welby_claim_groups always;

            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /hdr/ {
            welby on;
            welby_token header=X-Token;
            add_header X-Reason $welby_reason always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /cookie/ {
            welby on;
            welby_token cookie=at;
            add_header X-Reason $welby_reason always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /open/ {
            welby on;
            welby_token off;
            add_header X-Reason $welby_reason always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /realm/ {
            welby on;
            welby_realm "PHR API";
            add_header X-Reason $welby_reason always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /small/ {
            welby on;
            welby_token_max_size 512;
            add_header X-Reason $welby_reason always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate %%TESTDIR%%/server.crt;
        ssl_certificate_key %%TESTDIR%%/server.key;
        ssl_client_certificate %%TESTDIR%%/ca.crt;
        ssl_verify_client optional;

        location / {
            welby on;
            add_header X-Reason $welby_reason always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /bound/ {
            welby on;
            welby_token_binding on;
            add_header X-Reason $welby_reason always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # the echo backend
    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / {
            js_content echo.echo;
        }
    }

    # where jku / x5u headers point: the module must never fetch from it
    server {
        listen 127.0.0.1:%%PORT_8082%%;
        access_log %%TESTDIR%%/attacker.log;
        location / {
            return 200 '{"keys":[]}';
        }
    }
}
EOF

$t->run();

my $ATTACKER_URL = 'http://127.0.0.1:' . $t->port(8082) . '/jwks.json';
my $TLS_PORT = $t->port(8443);

###############################################################################
# token builders

# A token of the main issuer signed with its key for $alg (or key =>).
sub tok {
    my ($alg, %o) = @_;
    my $k = delete $o{key} // $K{$alg};
    my %set = (%{ delete $o{set} || {} });
    return jwt(key => $k, set => { iss => $ISS, %set }, %o);
}

# HS* token of the matching secret= issuer.
sub tok_hs {
    my ($alg, %o) = @_;
    my %set = (iss => 'https://' . lc($alg) . '.test',
        %{ delete $o{set} || {} });
    return jwt(key => $K{$alg}, set => \%set, %o);
}

sub b64u_json {
    return b64u(ref $_[0] ? JSON::XS->new->canonical->encode($_[0]) : $_[0]);
}

# Sets bits in the unused tail of an encoded part (RFC 4648 section 3.5):
# the part then decodes to the same bytes but is not canonical.
sub dirty_tail {
    my ($s) = @_;
    die "part length $s has no unused bits" if length($s) % 4 == 0;
    my $A = join '', 'A' .. 'Z', 'a' .. 'z', 0 .. 9, '-', '_';
    my $v = index($A, substr($s, -1));
    substr($s, -1) = substr($A, $v | 1, 1);
    return $s;
}

# A claims set whose JSON length is not a multiple of 3 (so its base64url
# has unused bits).
sub claims_tail {
    for my $n (0 .. 2) {
        my $c = claims(iss => $ISS, pad => 'x' x $n);
        return $c if length(JSON::XS->new->canonical->encode($c)) % 3;
    }
}

# A valid token of exactly $n bytes (a "pad" claim fills it).  Unpadded
# base64url never has a length of 4k+1, so one alg cannot reach every
# size: try ES256 and ES384 (signatures of 86 and 128 characters).
sub sized_token {
    my ($n) = @_;
    for my $alg (qw(ES256 ES384)) {
        my $est = int(($n - length tok($alg)) * 3 / 4);
        for my $len ($est - 32 .. $est + 8) {
            my $tk = tok($alg, set => { pad => 'x' x $len });
            return $tk if length($tk) == $n;
        }
    }
    die "cannot build a token of $n bytes";
}

# An ECDSA signature with r = s = the given big-endian value, of the
# curve's size.
sub ecdsa_rs {
    my ($hex, $size) = @_;
    my $v = pack('H*', $hex);
    $v = ("\0" x ($size - length $v)) . $v;
    return $v . $v;
}
my $P256_N = 'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551';

# The RSA public key PEM of a key, as the HMAC secret of the alg-confusion
# attack (as published in the JWKS/PEM a gateway trusts).
my $RSA_PEM = Welby::JWT::pem($K{RS256});
my $PEM_RSA_PEM = $t->read_file('rsa.pem');

sub bearer { return { headers => ["Authorization: Bearer $_[0]"] } }

sub bearer_tls {
    my ($tok, $cert, $uri) = @_;
    return {
        uri => $uri // '/fhir/Patient/p1',
        port => $TLS_PORT, ssl => 1,
        headers => ["Authorization: Bearer $tok"],
        $cert ? (SSL_cert_file => "$d/$cert.crt",
                 SSL_key_file => "$d/$cert.key") : (),
    };
}

sub cnf { return { cnf => { 'x5t#S256' => $X5T{ $_[0] } } } }

###############################################################################
# the table: [what, request, status, reason]
#
# request: a token (sent as "Authorization: Bearer <token>" to
# /fhir/Patient/p1), or a hash of http_req options (uri, headers, port,
# ssl, SSL_*).  reason: the code, or a regex when the spec allows two.

my $PEM_ISS = { iss => 'https://pem.test' };

my @rows = (

    # ---- every algorithm, signed correctly -------------------------------
    (map { ["$_ token of the main issuer accepted", tok($_), 200] }
        qw(RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA)),
    (map { ["$_ token of a secret= issuer accepted", tok_hs($_), 200] }
        qw(HS256 HS384 HS512)),
    ['RS256 token of a PEM issuer (one key, no kid) accepted',
        jwt(key => $pem_rsa, set => $PEM_ISS), 200],
    ['ES256 token of a PEM issuer with kid= accepted',
        jwt(key => $pem_ec, set => { iss => 'https://pem-ec.test' }), 200],

    # ---- the Authorization header ----------------------------------------
    ['no Authorization header: token_missing, challenge without error',
        {}, 401, 'token_missing'],
    ['Basic scheme: token_missing',
        { headers => ['Authorization: Basic dXNlcjpwYXNz'] },
        401, 'token_missing'],
    ['scheme "bearer" in lower case accepted',
        { headers => ['Authorization: bearer ' . tok('ES256')] }, 200],
    ['scheme "BEARER" in upper case accepted',
        { headers => ['Authorization: BEARER ' . tok('ES256')] }, 200],
    ['a run of spaces after the scheme accepted',
        { headers => ['Authorization: Bearer   ' . tok('ES256')] }, 200],
    ['trailing tab after the token: token_malformed',
        { headers => ["Authorization: Bearer " . tok('ES256') . "\t"] },
        401, 'token_malformed'],
    ['Authorization header and access_token query: 400 token_ambiguous',
        { uri => '/fhir/Patient/p1?access_token=' . tok('ES256'),
          headers => ['Authorization: Bearer ' . tok('ES256')] },
        400, 'token_ambiguous'],
    ['access_token in the query only: 400 token_in_query',
        { uri => '/fhir/Patient/p1?_format=json&access_token='
            . tok('ES256') }, 400, 'token_in_query'],

    # ---- alg --------------------------------------------------------------
    (map {
        my $none = $_;
        (["alg \"$none\" with an empty signature: token_alg",
            jwt(header => { alg => $none, typ => 'at+jwt' },
                set => { iss => $ISS }, sig_b64 => ''), 401, 'token_alg'],
         ["alg \"$none\" with a signature: token_alg",
            jwt(header => { alg => $none, typ => 'at+jwt', kid => 'rs256' },
                set => { iss => $ISS }, alg => 'RS256', key => $K{RS256}),
            401, 'token_alg'])
    } qw(none None NONE nOnE)),
    ['no alg in the header: token_alg',
        tok('RS256', hdr => { alg => undef }, alg => 'RS256'),
        401, 'token_alg'],
    ['alg "rs256" (algorithms are case-sensitive): token_alg',
        tok('RS256', hdr => { alg => 'rs256' }, alg => 'RS256'),
        401, 'token_alg'],
    ['unknown alg "XS256": token_alg',
        tok('RS256', hdr => { alg => 'XS256' }, alg => 'RS256'),
        401, 'token_alg'],
    ['alg not a string: token_alg',
        tok('RS256', header => '{"alg":256,"kid":"rs256","typ":"at+jwt"}',
            alg => 'RS256'), 401, 'token_alg'],
    ['HS256 signed with the RSA key\'s public PEM as secret (alg '
        . 'confusion, kid of the RSA key): token_alg',
        tok('RS256', hdr => { alg => 'HS256' }, secret => $RSA_PEM),
        401, 'token_alg'],
    ['HS256 signed with the PEM issuer\'s public key file as secret: '
        . 'token_alg',
        jwt(key => $pem_rsa, set => $PEM_ISS, hdr => { alg => 'HS256' },
            secret => $PEM_RSA_PEM), 401, 'token_alg'],
    ['alg ES384 on the ES256 key (kid es256): token_alg',
        tok('ES256', hdr => { alg => 'ES384', kid => 'es256' },
            key => $K{ES384}),
        401, 'token_alg'],
    ['alg RS256 on the PS256 key (one RSA key, one alg): token_alg',
        tok('PS256', hdr => { alg => 'RS256' }), 401, 'token_alg'],
    ['RS256 token for an issuer with algorithms=ES256: refused',
        tok('RS256', set => { iss => 'https://es-only.test' }),
        401, qr/^token_(?:alg|key)\z/],

    # ---- key selection ----------------------------------------------------
    ['unknown kid: token_key',
        tok('ES256', hdr => { kid => 'no-such-key' }), 401, 'token_key'],
    ['kid "../../etc/passwd": token_key',
        tok('ES256', hdr => { kid => '../../etc/passwd' }),
        401, 'token_key'],
    ['empty kid: token_key',
        tok('ES256', hdr => { kid => '' }), 401, 'token_key'],
    ['no kid with an issuer of several keys: token_key',
        tok('ES256', hdr => { kid => undef }), 401, 'token_key'],
    ['kid not a string: token_claims',
        tok('ES256', header => '{"alg":"ES256","kid":7,"typ":"at+jwt"}'),
        401, 'token_claims'],
    ['embedded jwk with the attacker\'s key, no kid: token_key',
        tok('RS256', key => $attacker,
            hdr => { kid => undef, jwk => public_jwk($attacker) }),
        401, 'token_key'],
    ['embedded jwk with the attacker\'s key and a trusted kid: '
        . 'token_signature',
        tok('RS256', key => $attacker,
            hdr => { kid => 'rs256', jwk => public_jwk($attacker) }),
        401, 'token_signature'],
    ['jku to 127.0.0.1 with the attacker\'s kid: token_key',
        tok('RS256', key => $attacker, hdr => { jku => $ATTACKER_URL }),
        401, 'token_key'],
    ['jku to 127.0.0.1 with a trusted kid: token_signature',
        tok('ES256', key => $attacker_ec,
            hdr => { kid => 'es256', jku => $ATTACKER_URL }),
        401, 'token_signature'],
    ['x5u to 127.0.0.1 with the attacker\'s kid: token_key',
        tok('RS256', key => $attacker, hdr => { x5u => $ATTACKER_URL }),
        401, 'token_key'],
    ['x5u to 127.0.0.1 with a trusted kid: token_signature',
        tok('ES256', key => $attacker_ec,
            hdr => { kid => 'es256', x5u => $ATTACKER_URL }),
        401, 'token_signature'],
    ['key of another issuer (kid unknown here): token_key',
        tok('ES256', key => $other_1), 401, 'token_key'],
    ['key of another issuer with a kid the main issuer also has: '
        . 'token_signature',
        tok('ES256', key => $other_es), 401, 'token_signature'],
    ['main issuer\'s key for a token of the other issuer: token_signature',
        tok('ES256', set => { iss => $OTHER }), 401, 'token_signature'],
    ['other issuer\'s own key: accepted',
        tok('ES256', key => $other_es, set => { iss => $OTHER }), 200],

    # ---- signatures -------------------------------------------------------
    ['payload changed after signing: token_signature',
        tok('RS256', edit => sub {
            my ($h, $p, $s) = @_;
            return ($h, b64u_json(claims(iss => $ISS, sub => 'admin')), $s);
        }), 401, 'token_signature'],
    ['signature of another token: token_signature',
        tok('ES256', sig_b64 => (split /\./, tok('ES256'))[2]),
        401, 'token_signature'],
    ['ES256 psychic signature r = s = 0: token_signature',
        tok('ES256', sig => "\0" x 64), 401, 'token_signature'],
    ['ES384 psychic signature r = s = 0: token_signature',
        tok('ES384', sig => "\0" x 96), 401, 'token_signature'],
    ['ES256 signature r = s = n (the curve order): token_signature',
        tok('ES256', sig => ecdsa_rs($P256_N, 32)), 401, 'token_signature'],
    ['ES256 signature of 63 bytes: token_signature',
        tok('ES256', edit => sub {
            my ($h, $p, $s) = @_;
            return ($h, $p, b64u(substr(b64u_decode($s), 0, 63)));
        }), 401, 'token_signature'],
    ['ES256 signature of 65 bytes: token_signature',
        tok('ES256', edit => sub {
            my ($h, $p, $s) = @_;
            return ($h, $p, b64u(b64u_decode($s) . "\0"));
        }), 401, 'token_signature'],
    ['ES256 signature in DER instead of r||s: token_signature',
        tok('ES256', edit => sub {
            my ($h, $p, $s) = @_;
            return ($h, $p,
                b64u($K{ES256}{pk}->sign_message("$h.$p", 'SHA256')));
        }), 401, 'token_signature'],
    ['RS256 signature one byte short: token_signature',
        tok('RS256', edit => sub {
            my ($h, $p, $s) = @_;
            return ($h, $p, b64u(substr(b64u_decode($s), 1)));
        }), 401, 'token_signature'],
    ['RS256 with an empty signature: token_signature',
        tok('RS256', sig_b64 => ''), 401, 'token_signature'],
    ['PS256 signed with salt length 0 (not the hash length): '
        . 'token_signature',
        tok('PS256', edit => sub {
            my ($h, $p, $s) = @_;
            return ($h, $p, b64u($K{PS256}{pk}->sign_message("$h.$p",
                'SHA256', 'pss', 0)));
        }), 401, 'token_signature'],
    ['EdDSA signature with one bit flipped: token_signature',
        tok('EdDSA', edit => sub {
            my ($h, $p, $s) = @_;
            my $b = b64u_decode($s);
            substr($b, 10, 1) = chr(ord(substr($b, 10, 1)) ^ 1);
            return ($h, $p, b64u($b));
        }), 401, 'token_signature'],
    ['HS256 signed with another secret: token_signature',
        tok_hs('HS256', secret => 'x' x 32), 401, 'token_signature'],

    # ---- structure and encoding -------------------------------------------
    ['two parts only: token_malformed',
        join('.', (split /\./, tok('ES256'))[0, 1]), 401, 'token_malformed'],
    ['trailing dot (four parts): token_malformed',
        tok('ES256') . '.', 401, 'token_malformed'],
    ['padding "=" after the payload: token_malformed',
        tok('ES256', edit => sub { ($_[0], "$_[1]=", $_[2]) }),
        401, 'token_malformed'],
    ['"+" (base64, not base64url) in the payload: token_malformed',
        tok('ES256', edit => sub {
            my ($h, $p, $s) = @_;
            substr($p, 5, 1) = '+';
            return ($h, $p, $s);
        }), 401, 'token_malformed'],
    ['"/" (base64, not base64url) in the header: token_malformed',
        tok('ES256', edit => sub {
            my ($h, $p, $s) = @_;
            substr($h, 3, 1) = '/';
            return ($h, $p, $s);
        }), 401, 'token_malformed'],
    ['set unused bits in the last payload character: token_malformed',
        tok('ES256', claims => claims_tail(), edit => sub {
            ($_[0], dirty_tail($_[1]), $_[2]) }), 401, 'token_malformed'],
    ['set unused bits in the last signature character: token_malformed',
        tok('ES256', edit => sub { ($_[0], $_[1], dirty_tail($_[2])) }),
        401, 'token_malformed'],
    ['header not JSON: token_malformed',
        tok('ES256', header => '{"alg":"ES256",'), 401, 'token_malformed'],
    ['header a JSON array: token_malformed',
        tok('ES256', header => '["ES256"]', alg => 'ES256'),
        401, 'token_malformed'],
    ['payload not JSON: token_malformed',
        tok('ES256', claims => 'not json'), 401, 'token_malformed'],
    ['duplicate claim "sub": token_malformed',
        tok('ES256', claims => do {
            my $j = JSON::XS->new->canonical->encode(claims(iss => $ISS));
            $j =~ s/^\{/{"sub":"admin",/;
            $j;
        }), 401, 'token_malformed'],
    ['duplicate header member "alg": token_malformed',
        tok('ES256', header => '{"alg":"none","alg":"ES256",'
            . '"kid":"es256","typ":"at+jwt"}', alg => 'ES256'),
        401, 'token_malformed'],
    ['duplicate header member "kid": token_malformed',
        tok('ES256', header => '{"alg":"ES256","kid":"es256",'
            . '"kid":"rs256","typ":"at+jwt"}'), 401, 'token_malformed'],
    ['claims nested 20 levels deep: token_malformed',
        tok('ES256', claims => do {
            my $j = JSON::XS->new->canonical->encode(claims(iss => $ISS));
            $j =~ s/^\{/{"x":${\('[' x 20)}1${\(']' x 20)},/;
            $j;
        }), 401, 'token_malformed'],
    ['header nested 20 levels deep: token_malformed',
        tok('ES256', header => '{"alg":"ES256","kid":"es256",'
            . '"typ":"at+jwt","x":' . ('{"a":' x 20) . '1' . ('}' x 20)
            . '}'), 401, 'token_malformed'],
    ['invalid UTF-8 in a claim: token_malformed',
        tok('ES256', claims => do {
            my $j = JSON::XS->new->canonical->encode(
                claims(iss => $ISS, tenant => 'TENANT'));
            $j =~ s/TENANT/\xC3\x28/;
            $j;
        }), 401, 'token_malformed'],
    ['crit header member: token_crit',
        tok('ES256', hdr => { crit => ['exp'], exp => $NOW + 300 }),
        401, 'token_crit'],
    ['token of 9000 bytes: token_too_large',
        tok('ES256', set => { pad => 'x' x 6700 }), 401, 'token_too_large'],
    ['token of exactly 8192 bytes (the default limit) accepted',
        sized_token(8192), 200],
    ['token of 8193 bytes: token_too_large',
        sized_token(8193), 401, 'token_too_large'],
    ['welby_token_max_size 512 and an RS256 token: token_too_large',
        { uri => '/small/x', %{ bearer(tok('RS256')) } },
        401, 'token_too_large'],

    # ---- claim types ------------------------------------------------------
    ['exp as a string: token_claims',
        tok('ES256', set => { exp => '' . ($NOW + 300) }),
        401, 'token_claims'],
    ['iat as a string: token_claims',
        tok('ES256', set => { iat => '' . ($NOW + 0) }),
        401, 'token_claims'],
    ['nbf as a boolean: token_claims',
        tok('ES256', claims => do {
            my $j = JSON::XS->new->canonical->encode(claims(iss => $ISS));
            $j =~ s/^\{/{"nbf":true,/;
            $j;
        }), 401, 'token_claims'],
    ['aud a number: token_claims',
        tok('ES256', set => { aud => 42 }), 401, 'token_claims'],
    ['aud an empty array: token_claims',
        tok('ES256', set => { aud => [] }), 401, 'token_claims'],
    ['sub a number: token_claims',
        tok('ES256', set => { sub => 12345 }), 401, 'token_claims'],
    ['cnf with an x5t#S256 that is not 32 bytes: token_claims',
        tok('ES256', set => { cnf => { 'x5t#S256' => b64u('short') } }),
        401, 'token_claims'],

    # ---- issuer -----------------------------------------------------------
    ['unknown iss: token_issuer',
        tok('ES256', set => { iss => 'https://evil.test' }),
        401, 'token_issuer'],
    ['iss with a trailing slash (exact match only): token_issuer',
        tok('ES256', set => { iss => "$ISS/" }), 401, 'token_issuer'],

    # ---- typ and ID tokens ------------------------------------------------
    ['no typ (default typ=at+jwt): token_type',
        tok('ES256', hdr => { typ => undef }), 401, 'token_type'],
    ['typ "JWT" on a default issuer: token_type',
        tok('ES256', hdr => { typ => 'JWT' }), 401, 'token_type'],
    ['typ "application/at+jwt" accepted',
        tok('ES256', hdr => { typ => 'application/at+jwt' }), 200],
    ['typ "AT+JWT" (case-insensitive) accepted',
        tok('ES256', hdr => { typ => 'AT+JWT' }), 200],
    ['typ "JWT" on a typ=jwt issuer accepted',
        tok('ES256', hdr => { typ => 'JWT' },
            set => { iss => 'https://jwt.test' }), 200],
    ['no typ on a typ=jwt issuer accepted',
        tok('ES256', hdr => { typ => undef },
            set => { iss => 'https://jwt.test' }), 200],
    ['typ "dpop+jwt" on a typ=jwt issuer: token_type',
        tok('ES256', hdr => { typ => 'dpop+jwt' },
            set => { iss => 'https://jwt.test' }), 401, 'token_type'],
    ['ID token (nonce present): token_type',
        tok('ES256', set => { nonce => 'n-0S6_WzA2Mj' }), 401, 'token_type'],
    ['ID token (at_hash present): token_type',
        tok('ES256', set => { at_hash => 'HK6E_P6Dh8Y93mRNtsDB1Q' }),
        401, 'token_type'],
    ['no client_id (an ID token): token_type',
        tok('ES256', set => { client_id => undef }), 401, 'token_type'],

    # ---- required claims --------------------------------------------------
    (map { ["no $_ claim: token_claims",
            tok('ES256', set => { $_ => undef }), 401, 'token_claims'] }
        qw(jti sub iat exp aud)),
    ['require=patient,scope and no patient: token_claims',
        tok('ES256', set => { iss => 'https://require.test',
            patient => undef }), 401, 'token_claims'],
    ['require=patient,scope and no scope: token_claims',
        tok('ES256', set => { iss => 'https://require.test',
            scope => undef }), 401, 'token_claims'],
    ['require=patient,scope with both accepted',
        tok('ES256', set => { iss => 'https://require.test' }), 200],
    ['no patient, scope, fhirUser on a default issuer accepted',
        tok('ES256', set => { patient => undef, scope => undef }), 200],

    # ---- time -------------------------------------------------------------
    ['expired 30 s ago (within the 60 s leeway) accepted',
        tok('ES256', set => { iat => $NOW - 330, exp => $NOW - 30 }), 200],
    ['expired 120 s ago (beyond the leeway): token_expired',
        tok('ES256', set => { iat => $NOW - 420, exp => $NOW - 120 }),
        401, 'token_expired'],
    ['nbf 120 s in the future: token_not_yet_valid',
        tok('ES256', set => { nbf => $NOW + 120 }),
        401, 'token_not_yet_valid'],
    ['nbf 30 s in the future (within the leeway) accepted',
        tok('ES256', set => { nbf => $NOW + 30 }), 200],
    ['iat 120 s in the future: token_not_yet_valid',
        tok('ES256', set => { iat => $NOW + 120, exp => $NOW + 400 }),
        401, 'token_not_yet_valid'],
    ['iat 30 s in the future (within the leeway) accepted',
        tok('ES256', set => { iat => $NOW + 30 }), 200],
    ['lifetime 2 h with max_lifetime=1h: token_lifetime',
        tok('ES256', set => { iss => 'https://lifetime.test',
            exp => $NOW + 7200 }), 401, 'token_lifetime'],
    ['lifetime 30 min with max_lifetime=1h accepted',
        tok('ES256', set => { iss => 'https://lifetime.test',
            exp => $NOW + 1800 }), 200],
    ['lifetime 2 h on an issuer without max_lifetime accepted',
        tok('ES256', set => { exp => $NOW + 7200 }), 200],

    # ---- audience ---------------------------------------------------------
    ['wrong aud: token_audience',
        tok('ES256', set => { aud => 'https://elsewhere.test' }),
        401, 'token_audience'],
    ['aud differing in case: token_audience',
        tok('ES256', set => { aud => 'https://FHIR.test' }),
        401, 'token_audience'],
    ['aud array containing the configured audience accepted',
        tok('ES256', set => { aud => ['https://elsewhere.test', $AUD] }),
        200],
    ['aud array without a configured audience: token_audience',
        tok('ES256', set => { aud => ['https://a.test', 'https://b.test'] }),
        401, 'token_audience'],
    ['the second configured audience accepted',
        tok('ES256', set => { aud => $AUD2 }), 200],

    # ---- revocation -------------------------------------------------------
    ['revoked jti: token_revoked',
        tok('ES256', set => { jti => 'revoked-jti-1' }), 401, 'token_revoked'],
    ['subject revoked for tokens issued before a time: token_revoked',
        tok('ES256', set => { sub => 'revoked-sub', iat => $NOW - 60 }),
        401, 'token_revoked'],
    ['the same subject\'s token issued after that time accepted',
        tok('ES256', set => { sub => 'revoked-sub', iat => $NOW }), 200],

    # ---- order of the checks ----------------------------------------------
    ['expired and badly signed: token_signature (signature first)',
        tok('ES256', set => { exp => $NOW - 1000, iat => $NOW - 2000 },
            sig => "\0" x 64), 401, 'token_signature'],
    ['expired and wrong aud: token_expired (exp before audience)',
        tok('ES256', set => { exp => $NOW - 1000, iat => $NOW - 2000,
            aud => 'https://elsewhere.test' }), 401, 'token_expired'],
    ['revoked and expired: token_expired (revocation after time)',
        tok('ES256', set => { jti => 'revoked-jti-1', exp => $NOW - 1000,
            iat => $NOW - 2000 }), 401, 'token_expired'],
    ['unknown issuer and crit: token_crit (parse before issuer)',
        tok('ES256', hdr => { crit => ['x'] },
            set => { iss => 'https://evil.test' }), 401, 'token_crit'],

    # ---- token sources, realm, welby_token off ----------------------------
    ['welby_token header=X-Token: a valid token in X-Token accepted',
        { uri => '/hdr/x', headers => ['X-Token: ' . tok('ES256')] }, 200],
    ['welby_token header=X-Token: no X-Token: token_missing',
        { uri => '/hdr/x' }, 401, 'token_missing'],
    ['welby_token header=X-Token: Authorization Bearer is not read: '
        . 'token_missing',
        { uri => '/hdr/x', %{ bearer(tok('ES256')) } }, 401, 'token_missing'],
    ['welby_token header=X-Token: a bad token in X-Token: token_signature',
        { uri => '/hdr/x',
          headers => ['X-Token: ' . tok('ES256', sig => "\1" x 64)] },
        401, 'token_signature'],
    ['welby_token cookie=at: a valid token in cookie "at" accepted',
        { uri => '/cookie/x',
          headers => ['Cookie: theme=dark; at=' . tok('ES256')] }, 200],
    ['welby_token cookie=at: only other cookies: token_missing',
        { uri => '/cookie/x', headers => ['Cookie: theme=dark; sid=1'] },
        401, 'token_missing'],
    ['welby_token cookie=at: an expired token in the cookie: '
        . 'token_expired',
        { uri => '/cookie/x', headers => ['Cookie: at=' . tok('ES256',
            set => { exp => $NOW - 1000, iat => $NOW - 2000 })] },
        401, 'token_expired'],
    ['welby_token off: no token needed',
        { uri => '/open/x' }, 200],
    ['welby_realm "PHR API": the challenge for a missing token names it',
        { uri => '/realm/x' }, 401, 'token_missing', 'PHR API'],
    ['welby_realm "PHR API": the challenge for a bad token names it',
        { uri => '/realm/x', %{ bearer(tok('ES256', set => {
            aud => 'https://elsewhere.test' })) } },
        401, 'token_audience', 'PHR API'],

    # ---- certificate-bound tokens (RFC 8705) ------------------------------
    ['bound token with the right client certificate accepted',
        bearer_tls(tok('ES256', set => cnf('client1')), 'client1'), 200],
    ['bound token with another client certificate: token_binding',
        bearer_tls(tok('ES256', set => cnf('client1')), 'client2'),
        401, 'token_binding'],
    ['bound token over TLS without a client certificate: token_binding',
        bearer_tls(tok('ES256', set => cnf('client1'))),
        401, 'token_binding'],
    ['bound token over plain HTTP: token_binding',
        tok('ES256', set => cnf('client1')), 401, 'token_binding'],
    ['unbound token with a client certificate accepted (binding off)',
        bearer_tls(tok('ES256'), 'client1'), 200],
    ['welby_token_binding on: unbound token: token_binding',
        bearer_tls(tok('ES256'), 'client1', '/bound/x'),
        401, 'token_binding'],
    ['welby_token_binding on: bound token, right certificate accepted',
        bearer_tls(tok('ES256', set => cnf('client2')), 'client2',
            '/bound/x'), 200],
);

$t->plan(scalar(@rows) + 36);

my $n_req = 0;

sub request {
    my ($req) = @_;
    $req = bearer($req) unless ref $req;
    my %o = %$req;
    $o{uri} //= '/fhir/Patient/p1';
    push @{ $o{headers} }, 'X-Request-Id: row-' . ++$n_req;
    return parse_response(http_req(%o));
}

for my $row (@rows) {
    my ($what, $req, $status, $reason, $realm) = @$row;
    $realm //= 'welby';
    my $r = request($req);
    my @bad;

    if (!$r) {
        push @bad, 'no response';
    } elsif ($status == 200) {
        push @bad, 'status ' . $r->status if $r->status != 200;
        push @bad, 'WWW-Authenticate sent' if $r->header_count(
            'WWW-Authenticate');
        push @bad, 'X-Reason ' . $r->header('X-Reason')
            if length($r->header('X-Reason') // '');
        my $j = $r->json;
        push @bad, 'not answered by the backend'
            unless $j && defined $j->{method};
    } else {
        my $j = $r->json;
        my $code = $j && eval { $j->{issue}[0]{details}{coding}[0]{code} };
        my $ok = ref $reason ? ($code // '') =~ $reason
            : ($code // '') eq $reason;
        push @bad, 'status ' . $r->status if $r->status != $status;
        push @bad, 'reason ' . ($code // 'none') unless $ok;
        push @bad, 'X-Reason ' . ($r->header('X-Reason') // 'none')
            unless ($r->header('X-Reason') // '') eq ($code // '');
        push @bad, 'Content-Type ' . ($r->header('Content-Type') // 'none')
            unless ($r->header('Content-Type') // '')
                eq 'application/fhir+json';
        push @bad, 'no X-Request-Id' unless $r->header('X-Request-Id');

        my @www = $r->header('WWW-Authenticate');
        my $q = quotemeta $realm;
        my $error = $status == 400 ? 'invalid_request' : 'invalid_token';
        my $expect = $reason eq 'token_missing'
            ? qr/^Bearer realm="$q"\z/
            : qr/^Bearer realm="$q", error="$error", /
              . qr/error_description="[^"\\]+"\z/;
        push @bad, 'WWW-Authenticate ' . join(' | ', @www)
            unless @www == 1 && $www[0] =~ $expect;
    }

    my $label = $status == 200 ? $what
        : "$what [$status " . (ref $reason ? 'token_alg|token_key' : $reason)
          . ']';
    ok(!@bad, $label) or diag(join('; ', @bad));
}

###############################################################################
# Two Authorization headers: nginx itself refuses a repeated Authorization
# with a plain 400 ("client sent duplicate header line") while reading the
# headers, before any module runs, so the module's token_ambiguous can only
# be seen for header + query (in the table).  What matters holds either
# way: 400, and the backend is not reached.

{
    my $r = request({ headers => ['Authorization: Bearer ' . tok('ES256'),
        'Authorization: Bearer ' . tok('ES256')] });
    ok($r && $r->status == 400 && !($r->json && $r->json->{method}),
        'two Authorization headers with Bearer: 400, not proxied')
        or diag($r ? $r->head : 'no response');
}

###############################################################################
# what the backend receives

sub backend_headers {
    my ($r) = @_;
    my $j = $r && $r->json;
    return $j && $j->{headers} || {};
}

my $jti = unique_jti();
my $full = tok('EdDSA', set => {
    sub => 'user-42', client_id => 'app-7', jti => $jti,
    scope => 'patient/Observation.read launch/patient', patient => 'p2',
    fhirUser => 'Practitioner/pr1', amr => ['pwd', 'otp'],
    tenant => 'clinic-9', level => 3, groups => ['nurses', 'night'],
});

my $r = request({ headers => [
    "Authorization: Bearer $full",
    'X-Welby-Sub: forged', 'X-WELBY-PATIENT: p1', 'X-Welby-Admin: 1',
    'X-Remote-User: root', 'X-Other: kept',
] });
my $h = backend_headers($r);

is($r && $r->status, 200, 'identity: token with every claim accepted');
is_deeply(
    { map { $_ => $h->{$_} } qw(x-welby-sub x-welby-client-id x-welby-iss
        x-welby-patient x-welby-scope x-welby-fhir-user x-welby-jti) },
    {
        'x-welby-sub' => 'user-42',
        'x-welby-client-id' => 'app-7',
        'x-welby-iss' => $ISS,
        'x-welby-patient' => 'p2',
        'x-welby-scope' => 'patient/Observation.read launch/patient',
        'x-welby-fhir-user' => 'Practitioner/pr1',
        'x-welby-jti' => $jti,
    }, 'identity: the backend receives X-Welby-Sub, -Client-Id, -Iss, '
        . '-Patient, -Scope, -Fhir-User, -Jti from the token');
is($h->{'x-welby-sub'}, 'user-42',
    'identity: a client-sent X-Welby-Sub is replaced, not added to');
ok(!exists $h->{'x-welby-admin'},
    'identity: a client-sent X-Welby-Admin (any X-Welby-*) is removed');
ok(!exists $h->{'x-remote-user'},
    'identity: welby_strip_header X-Remote-User removes it');
is($h->{'x-other'}, 'kept', 'identity: other client headers pass');

$r = request({ headers => [
    'Authorization: Bearer ' . tok('ES256', set => {
        patient => undef, scope => undef }),
    'X-Welby-Patient: p1', 'X-Welby-Scope: user/*.*',
] });
$h = backend_headers($r);
ok($r && $r->status == 200 && !exists $h->{'x-welby-patient'}
    && !exists $h->{'x-welby-scope'} && !exists $h->{'x-welby-fhir-user'},
    'identity: without patient/scope/fhirUser claims the backend gets no '
    . 'such header, even when the client sent one') or diag(explain $h);

$r = request({ uri => '/open/x', headers => ['X-Welby-Sub: forged'] });
$h = backend_headers($r);
ok($r && $r->status == 200 && !exists $h->{'x-welby-sub'},
    'identity: welby_token off still removes a client-sent X-Welby-Sub')
    or diag(explain $h);

# variables, through add_header on the protected location

$r = request($full);
is($r && $r->header('X-Sub'), 'user-42', '$welby_sub');
is($r && $r->header('X-Client-Id'), 'app-7', '$welby_client_id');
is($r && $r->header('X-Iss'), $ISS, '$welby_iss');
is($r && $r->header('X-Jti'), $jti, '$welby_jti');
is($r && $r->header('X-Scope'), 'patient/Observation.read launch/patient',
    '$welby_scope');
is($r && $r->header('X-Patient'), 'p2', '$welby_patient');
is($r && $r->header('X-Fhir-User'), 'Practitioner/pr1', '$welby_fhir_user');
is($r && $r->header('X-Amr'), 'pwd otp', '$welby_amr: the array space-joined');
is($r && $r->header('X-Claim-Tenant'), 'clinic-9',
    '$welby_claim_tenant: a string claim as is');
is($r && $r->header('X-Claim-Level'), '3',
    '$welby_claim_level: a number claim as text');
is($r && $r->header('X-Claim-Groups'), 'nurses night',
    '$welby_claim_groups: an array of strings space-joined');

###############################################################################
# the token cache: a token accepted twice, and a revocation applies to a
# cached token once the revocation file has been checked again

my $cjti = unique_jti();
my $cached = tok('ES256', set => { jti => $cjti });
my @st = map { my $x = request($cached); $x ? $x->status : 0 } 1 .. 2;
is("@st", '200 200', 'cache: the same token twice, both accepted');

# at once, and in the mtime second of the first write, as an edit within
# a second has it: the worker tells a changed file by more than its mtime
# (more in t/24-token-watch.t)
my $log_at = length $t->read_file('error.log');
my $mtime = (stat "$d/revoked.txt")[9];
$t->write_file('revoked.txt', $t->read_file('revoked.txt') . "jti $cjti\n");
utime($mtime, $mtime, "$d/revoked.txt") or die "utime: $!\n";

my $reloaded = 0;
my $notice = qr{\[notice\] .*welby: revocation list "\Q$d\E/revoked\.txt" }
    . qr{reloaded};
for (1 .. 100) {    # check=1s: up to 10 s
    $reloaded = substr($t->read_file('error.log'), $log_at) =~ /$notice/;
    last if $reloaded;
    sleep 0.1;
}

my $x = request($cached);
my $j = $x && $x->json;
my $code = $j && eval { $j->{issue}[0]{details}{coding}[0]{code} } || '';
is($code, 'token_revoked',
    'cache: a cached token is refused (token_revoked) once the worker has '
    . 'reloaded the revocation file with its jti')
    or diag($reloaded ? 'reloaded' : 'no reload notice in error.log');

$x = request(tok('ES256'));
is($x && $x->status, 200,
    'cache: other tokens still accepted after the revocation file changed');

# a cached token still meets the checks of the location and connection
# that use it: the cache remembers a signature, not a decision

sub reason_of {
    my ($r) = @_;
    my $j = $r && $r->json;
    return ($r ? $r->status : 0) . ' '
        . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} } || '');
}

my $unbound = tok('ES256');
my $bound = tok('ES256', set => cnf('client1'));
# (the cache stores a token on its second verification)
request(bearer_tls($_, 'client1')) for $unbound, $unbound, $bound, $bound;

my @seq = (
    reason_of(request(bearer_tls($unbound, 'client1'))),
    reason_of(request(bearer_tls($unbound, 'client1', '/bound/x'))),
);
is("@seq", '200  401 token_binding',
    'cache: an unbound token accepted (and cached) at / is refused at a '
    . 'welby_token_binding on location');

@seq = (
    reason_of(request(bearer_tls($bound, 'client1'))),
    reason_of(request(bearer_tls($bound, 'client2'))),
    reason_of(request(bearer_tls($bound))),
);
is("@seq", '200  401 token_binding 401 token_binding',
    'cache: a bound token accepted (and cached) with its certificate is '
    . 'refused with another certificate and with none');

###############################################################################
# jku / x5u were never followed

my $ctl = parse_response(http_req(uri => '/control', port => $t->port(8082)));
my $alog = '';
for (1 .. 50) {
    $alog = $t->read_file('attacker.log');
    last if $alog =~ /control/;
    sleep 0.1;
}
my @fetched = grep { !/control/ } split /\n/, $alog;
ok($ctl && $alog =~ /control/ && !@fetched,
    'the module never fetched the jku / x5u URLs of a token')
    or diag($alog);

###############################################################################
# configuration errors: nginx -t fails naming the file and the reason

my $N = 0;
my $ec_k1 = Crypt::PK::ECC->new;
$ec_k1->generate_key('secp256k1');
my $small_rsa = gen_key('RS256', kid => 'small', bits => 1024);

sub issuer_conf {
    my ($line) = @_;
    my $name = 'issuer-' . ++$N . '.conf';
    $t->write_file_expand($name, <<"EOF");
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    $line

    server {
        listen 127.0.0.1:%%PORT_8090%%;
        location / { welby on; return 204; }
    }
}
EOF
    return $t->test_config($name);
}

# The module's own words after the file name, up to nginx's " in
# <conf>:<line>": a reason pattern matched against the whole output could
# match the file name or nginx's "test failed" instead.
sub key_error {
    my ($out, $path) = @_;
    return $out =~ /\[emerg\]\ welby_issuer\ "[^"]+":
                     \ keys\ file\ "\Q$path\E":\ (.*?)\ in\ \S+:\d+$/mx
        ? $1 : undef;
}

sub bad_keys {
    my ($what, $file, $content, $reason_re, $extra) = @_;
    $t->write_file("bad/$file", $content) if defined $content;
    my $path = "$d/bad/$file";
    my ($c, $out) = issuer_conf("welby_issuer https://bad.test keys=$path "
        . "audience=$AUD" . ($extra // '') . ';');
    my $why = key_error($out, $path);
    ok($c != 0 && defined $why && $why =~ $reason_re,
        "nginx -t fails on $what, naming the file and the reason")
        or diag("exit $c: $out");
}

my ($c, $out) = issuer_conf("welby_issuer $ISS keys=$d/main.jwks "
    . "audience=$AUD;");
is($c, 0, 'nginx -t accepts a valid welby_issuer (control for the '
    . 'errors below)') or diag($out);

bad_keys('a missing keys file', 'missing.jwks', undef,
    qr/^open\(\) failed \(2: No such file or directory\)\z/);
bad_keys('a malformed JWKS', 'broken.jwks', '{"keys": [{"kty": "EC",',
    qr/^invalid JSON at line 1: /);
bad_keys('an RSA key of 1024 bits', 'rsa1024.jwks',
    JSON::XS->new->canonical->encode({ keys => [public_jwk($small_rsa)] }),
    qr/^key 1 \(kid "small"\): RSA key of 1024 bits, at least 2048 required\z/);
bad_keys('an unknown crv (secp256k1)', 'k1.jwks',
    JSON::XS->new->canonical->encode({ keys => [{
        %{ $ec_k1->export_key_jwk('public', 1) },
        kid => 'k1', use => 'sig', crv => 'secp256k1' }] }),
    qr/^key 1 \(kid "k1"\): unknown crv "secp256k1"\z/);
bad_keys('an "oct" (symmetric) key in a JWKS', 'oct.jwks',
    JSON::XS->new->canonical->encode({ keys => [
        public_jwk($K{HS256}, kid => 'hs') ] }),
    qr/^key 1 \(kid "hs"\): kty "oct" is not accepted in a JWKS file; / .
    qr/configure secret=\z/);
bad_keys('a private key member "d" in a JWKS', 'private.jwks',
    JSON::XS->new->canonical->encode({ keys => [{
        %{ $K{ES256}{pk}->export_key_jwk('private', 1) },
        kid => 'p', alg => 'ES256', use => 'sig' }] }),
    qr/^key 1 \(kid "p"\): holds private key member "d"\z/);

($c, $out) = issuer_conf("welby_issuer https://bad.test "
    . "keys=$d/main.jwks;");
ok($c != 0
    && $out =~ /\[emerg\] welby_issuer "https:\/\/bad\.test" needs audience= /,
    'nginx -t fails on a welby_issuer without audience=')
    or diag("exit $c: $out");

($c, $out) = issuer_conf("welby_issuer https://bad.test "
    . "keys=$d/main.jwks audience=$AUD colour=blue;");
ok($c != 0 && $out =~ /\[emerg\] invalid parameter "colour=blue"/,
    'nginx -t fails on an unknown welby_issuer parameter: '
    . 'invalid parameter "colour=blue"') or diag("exit $c: $out");

$t->write_file('bad/short.key', 'x' x 16);
($c, $out) = issuer_conf("welby_issuer https://bad.test "
    . "secret=$d/bad/short.key algorithms=HS256 audience=$AUD;");
ok($c != 0 && (key_error($out, "$d/bad/short.key") // '')
        eq 'secret of 16 bytes, HS256 needs at least 32',
    'nginx -t fails on an HS256 secret shorter than 32 bytes, naming the '
    . 'file and the reason') or diag("exit $c: $out");

###############################################################################

# the only run-time errors this file provokes are refusals: nothing at
# [error] from the module (checked by the teardown)

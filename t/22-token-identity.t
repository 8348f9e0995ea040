#!/usr/bin/perl

# Whose identity a request carries, and when it carries none.
#
# A token whose signature verifies but that is refused afterwards (expired,
# another audience, revoked, bound to a certificate the client did not
# present or that nginx did not verify) has had its claims read: they must
# still never reach a $welby_* variable, a $welby_claim_* variable or the
# audit record's agent, since nobody is authenticated by it.  A valid
# token's agent is complete.  $welby_claim_* never hands out a value with a
# control character, as add_header would write it into the response head.
# A subject revoked by time applies to a token served from the cache.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::XS ();
use Time::HiRes qw(sleep time);
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks x5t_s256 unique_jti);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $ISS = 'https://issuer.test';
my $AUD = 'https://fhir.test';
my $NOW = int(time());

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

sub revocations {
    my (@lines) = @_;
    # a rename: the watcher never reads a half-written file
    $t->write_file('revoked.tmp', join('', map { "$_\n" } @lines));
    rename("$d/revoked.tmp", "$d/revoked.txt") or die "rename: $!";
}
revocations('jti revoked-jti-22');

# a server certificate, a CA with a client certificate, and a self-signed
# client certificate that the CA never issued

sub ossl {
    my $out = `openssl @_ 2>&1`;
    die "openssl @_: $out" if $?;
    return $out;
}

my $EC = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes';
ossl("req -x509 $EC -days 1 -subj /CN=localhost"
    . " -keyout $d/server.key -out $d/server.crt");
ossl("req -x509 $EC -days 1 -subj /CN=welby-test-ca"
    . " -keyout $d/ca.key -out $d/ca.crt");
ossl("req $EC -subj /CN=client1 -keyout $d/client1.key -out $d/client1.csr");
ossl("x509 -req -in $d/client1.csr -CA $d/ca.crt -CAkey $d/ca.key"
    . " -set_serial 0x1a2b3c -sha256 -days 1 -out $d/client1.crt");
ossl("req -x509 $EC -days 1 -subj /CN=client1"
    . " -keyout $d/self.key -out $d/self.crt");
for my $c (qw(client1 self)) {
    ossl("x509 -in $d/$c.crt -outform DER -out $d/$c.der");
}
my %X5T = map { $_ => x5t_s256($t->read_file("$_.der")) } qw(client1 self);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # plain HTTP and a TLS server side by side

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_revocation %%TESTDIR%%/revoked.txt check=1s;
    welby_token_cache zone=tokens:1m;
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;

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
            add_header X-Claim-Note $welby_claim_note always;
            add_header X-Claim-Tags $welby_claim_tags always;

            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # any client certificate gets through nginx (optional_no_ca): the
    # module must look at the verification result itself
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate %%TESTDIR%%/server.crt;
        ssl_certificate_key %%TESTDIR%%/server.key;
        ssl_client_certificate %%TESTDIR%%/ca.crt;
        ssl_verify_client optional_no_ca;

        location / {
            welby on;
            add_header X-Reason $welby_reason always;
            add_header X-Sub $welby_sub always;
            add_header X-Claim-Tenant $welby_claim_tenant always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

$t->run()->plan(30);

###############################################################################

my @IDENTITY = qw(X-Sub X-Client-Id X-Iss X-Jti X-Scope X-Patient
    X-Fhir-User X-Amr X-Claim-Tenant X-Claim-Note X-Claim-Tags);

# every claim a variable or the agent could show
sub tok {
    my (%set) = @_;
    return jwt(key => $key, set => {
        iss => $ISS, aud => $AUD, sub => 'mallory', client_id => 'app-m',
        fhirUser => 'Practitioner/m1', amr => ['pwd', 'otp'],
        scope => 'user/*.read', patient => 'p9', tenant => 'clinic-m',
        %set,
    });
}

my $n = 0;

sub req {
    my ($tok, %o) = @_;
    return parse_response(http_req(uri => '/fhir/Patient/p1',
        headers => ["Authorization: Bearer $tok",
            'X-Request-Id: id22-' . ++$n], %o));
}

sub tls_req {
    my ($tok, $cert) = @_;
    return req($tok, port => $t->port(8443), ssl => 1,
        SSL_cert_file => "$d/$cert.crt", SSL_key_file => "$d/$cert.key");
}

sub reason_of {
    my ($r) = @_;
    my $j = $r && $r->json;
    return ($r ? $r->status : 0) . ' '
        . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} } // '');
}

# the one audit record of a response, by its request id ({} if none); the
# log phase writes it before nginx closes the connection, so it is there
sub audit {
    my ($r) = @_;
    my $id = $r && $r->header('X-Request-Id') // return {};
    my @a = grep { ($_->{id} // '') eq $id }
        map { eval { JSON::XS->new->decode($_) } // {} }
        split /\n/, $t->read_file('audit.log');
    return @a == 1 ? $a[0] : { count => scalar @a };
}

# the identity headers that came back (add_header sends none for an empty
# variable)
sub identity_sent {
    my ($r) = @_;
    return join ' ', grep { $r && $r->header_count($_) } @IDENTITY;
}

# the agent members other than the client certificate's thumbprint
sub agent_members {
    my ($a) = @_;
    return join ' ', sort grep { $_ ne 'cert_sha256' }
        keys %{ $a->{agent} || {} };
}

# "welby: token valid jti:<jti> cached:<0|1>" at debug level
sub cached_flags {
    my ($jti) = @_;
    return join '', map { /cached:(\d)/ ? $1 : () }
        grep { /welby: token valid jti:\Q$jti\E / }
        split /\n/, $t->read_file('error.log');
}

sub refused_identity {
    my ($what, $r, $expect) = @_;
    is(reason_of($r), $expect, "$what: $expect");
    is(identity_sent($r), '',
        "$what: no \$welby_* or \$welby_claim_* variable has a value");
    my $a = audit($r);
    is(($a->{count} // 1) . ' ' . agent_members($a), '1 ',
        "$what: the audit record has no agent but the certificate")
        or diag(explain $a);
}

###############################################################################
# a valid token: every variable, and the whole agent

my $jti = unique_jti();
my $r = req(tok(sub => 'nurse-22', client_id => 'app-22', jti => $jti,
    fhirUser => 'Practitioner/n22'));
is(reason_of($r), '200 ', 'valid token: 200');
is(identity_sent($r), 'X-Sub X-Client-Id X-Iss X-Jti X-Scope X-Patient '
    . 'X-Fhir-User X-Amr X-Claim-Tenant',
    'valid token: every identity variable of its claims has a value '
    . '(control for the refusals below)');
is_deeply(audit($r)->{agent}, {
        sub => 'nurse-22', client_id => 'app-22', iss => $ISS,
        fhir_user => 'Practitioner/n22', amr => ['pwd', 'otp'], jti => $jti,
    }, 'valid token: the audit agent is sub, client_id, iss, fhir_user, amr '
    . 'and jti of the token');

###############################################################################
# refused after the signature verified: no identity anywhere

refused_identity('expired 1000 s ago, signature valid',
    req(tok(exp => $NOW - 1000, iat => $NOW - 2000)), '401 token_expired');
refused_identity('another audience, signature valid',
    req(tok(aud => 'https://elsewhere.test')), '401 token_audience');
refused_identity('revoked jti, signature valid',
    req(tok(jti => 'revoked-jti-22')), '401 token_revoked');
refused_identity('bound to a certificate, over plain HTTP',
    req(tok(cnf => { 'x5t#S256' => $X5T{client1} })), '401 token_binding');

# RFC 8705 binds to a certificate nginx verified: a self-signed one that
# optional_no_ca lets through names the right thumbprint and still fails

is(reason_of(tls_req(tok(cnf => { 'x5t#S256' => $X5T{client1} }),
        'client1')), '200 ',
    'optional_no_ca: a token bound to the CA-issued certificate, presented: '
    . '200 (control)');
refused_identity('optional_no_ca: a token bound to a self-signed, '
    . 'unverified certificate, presented',
    tls_req(tok(cnf => { 'x5t#S256' => $X5T{self} }), 'self'),
    '401 token_binding');

###############################################################################
# $welby_claim_*: no control character reaches a header

$r = req(tok(note => 'plain words'));
is($r && $r->header('X-Claim-Note'), 'plain words',
    '$welby_claim_note: a plain string claim as is (control)');

# The response head as a client reads it: a bare CR or LF ends a line for
# most of them, though only CRLF does for parse_response.
sub head_lines {
    my ($r) = @_;
    return $r ? split /\r\n|\r|\n/, $r->head : ();
}

$r = req(tok(note => "a\r\nX-Injected: 1"));
ok($r && $r->status == 200 && !grep({ /^X-Injected/i } head_lines($r))
    && $r->header_count('X-Claim-Note') == 0,
    '$welby_claim_note: a signed "a CR LF X-Injected: 1" injects no header '
    . 'and is empty') or diag($r ? $r->head : 'no response');

$r = req(tok(tags => ['ok', "b\nX-Injected-Tags: 1"]));
ok($r && $r->status == 200 && !grep({ /^X-Injected/i } head_lines($r))
    && !grep({ /^X-Claim-Tags:/i } head_lines($r)),
    '$welby_claim_tags: an array with a LF in one string injects no header '
    . 'and is empty') or diag($r ? $r->head : 'no response');

$r = req(tok(note => "a\x7fb"));
ok($r && $r->status == 200 && $r->header_count('X-Claim-Note') == 0,
    '$welby_claim_note: a DEL character makes it empty')
    or diag($r ? $r->head : 'no response');

###############################################################################
# a subject revoked by time, for a token served from the cache

my $leaver_jti = unique_jti();
my $leaver = tok(sub => 'leaver-22', iat => $NOW - 10, jti => $leaver_jti);
my $stayer_jti = unique_jti();
my $stayer = tok(sub => 'stayer-22', iat => $NOW - 10, jti => $stayer_jti);

my @st = map { reason_of(req($_)) } ($leaver) x 3, ($stayer) x 3;
is("@st", join(' ', ('200 ') x 6),
    'cache: two subjects\' tokens, three times each: 200');
is(cached_flags($leaver_jti) . ' ' . cached_flags($stayer_jti), '001 001',
    'cache: the third request of each was served from the zone');

my $reloads = sub {
    my @l = $t->read_file('error.log') =~ /revocation list .* reloaded/g;
    return scalar @l;
};
my $before = $reloads->();
revocations('jti revoked-jti-22', "sub leaver-22 $NOW");

my $deadline = time() + 10;     # check=1s
sleep 0.1 while $reloads->() == $before && time() < $deadline;
ok($reloads->() > $before, 'the worker reloaded the revocation list');

refused_identity('cache hit: a token of a subject revoked for tokens '
    . 'issued before now', req($leaver), '401 token_revoked');

is(reason_of(req($stayer)) . ' ' . cached_flags($stayer_jti), '200  0011',
    'cache hit: the other subject\'s token is still served from the zone');
